import { afterEach, describe, expect, it } from "vitest";
import { replyChunks } from "../../support/openai-chunks.js";
import { eventually } from "../../support/harness.js";
import { runClient, serveRuntime, startClient, type ServedRuntime } from "./client-support.js";

/**
 * A server that goes away under a client command: killed (the connection
 * closes) or frozen (SIGSTOP: the connection stays open and nothing
 * answers, as with a hung host). The command must end with one line and
 * the documented exit code, and Ctrl-C must not wait on the frozen server.
 */

const opened: ServedRuntime[] = [];

afterEach(async () => {
  for (const rt of opened.splice(0)) {
    // A stopped process would hold SIGTERM until continued.
    rt.process.child.kill("SIGCONT");
    await rt.close();
  }
});

async function runtimeWithWorker(runtimeId: string): Promise<{ rt: ServedRuntime; workerId: string }> {
  const rt = await serveRuntime({ runtimeId });
  opened.push(rt);
  const { worker } = await rt.clients.catalog.createWorker({
    runtimeId: rt.runtimeId,
    profile: { source: { case: "builtin", value: "companion" } },
  });
  return { rt, workerId: worker?.ref?.workerId ?? "" };
}

/** A send whose reply has started streaming and whose provider never finishes it. */
async function sendInFlight(rt: ServedRuntime, workerId: string) {
  rt.fake.enqueue({ kind: "stream", chunks: replyChunks({ text: "Partial answer" }).slice(0, -1), end: "hang" });
  const send = startClient(["send", workerId, "tell me everything"], { server: rt.url });
  await eventually(() => send.stdout().includes("Partial answer"), 30_000, "the streamed text");
  return send;
}

describe("a server that goes away", () => {
  it("killed mid-send: exit 3 and one line saying the connection was lost", async () => {
    const { rt, workerId } = await runtimeWithWorker("rt-killed");
    const send = await sendInFlight(rt, workerId);
    rt.process.child.kill("SIGKILL");
    const exit = await send.exited;
    expect(send.stderr()).toMatch(/^worker-runtime: lost the connection to http:\/\/127\.0\.0\.1:\d+: .*\n$/);
    expect(exit).toEqual({ code: 3, signal: null });
  });

  it("frozen mid-send: a second Ctrl-C stops waiting at once, without waiting for the cancel", async () => {
    const { rt, workerId } = await runtimeWithWorker("rt-frozen-send");
    const send = await sendInFlight(rt, workerId);
    rt.process.child.kill("SIGSTOP");
    send.child.kill("SIGINT");
    await new Promise((resolve) => setTimeout(resolve, 300));
    const stoppedWaitingAt = Date.now();
    send.child.kill("SIGINT");
    const exit = await send.exited;
    // The keepalive would only notice the frozen server after 25 s.
    expect(Date.now() - stoppedWaitingAt).toBeLessThan(5_000);
    expect(exit).toEqual({ code: 130, signal: null });
    expect(send.stdout()).toContain("Partial answer");
    expect(send.stderr()).not.toContain("Error");
  });

  it("frozen before a call: the keepalive gives up, exit 3 with one line and no stack trace", async () => {
    const { rt } = await runtimeWithWorker("rt-frozen-list");
    rt.process.child.kill("SIGSTOP");
    const list = await runClient(["workers", "list"], { server: rt.url });
    expect(list.stderr).toMatch(/^worker-runtime: cannot reach http:\/\/127\.0\.0\.1:\d+: PING timed out \(reason: Unavailable\)\n$/);
    expect(list).toMatchObject({ code: 3, signal: null, stdout: "" });
    // Slow by design, not stuck: the CLI's keepalive pings after 15 s and gives up 10 s later
    // (src/cli/client/connection.ts), on top of starting two processes; at 42 s on a lightly
    // loaded two-core machine, the default 60 s ran out under load.
  }, 120_000);
});
