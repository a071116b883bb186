import { Code, ConnectError } from "@connectrpc/connect";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createRemoteTransport } from "../../src/backend/remote-transport.js";
import { createRuntimeClients } from "../../src/backend/runtime-clients.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { type RuntimeServer, startRuntimeServer } from "../../src/server/index.js";

/**
 * A route's transport, once closed (the Runtime was re-pointed or
 * removed), is sealed: a call made on it afterwards is refused at once with
 * UNAVAILABLE saying so, instead of quietly dialling the old address again
 * (the HTTP/2 session manager reconnects on demand). A real runtime server
 * on 127.0.0.1, the Backend's own transport to it.
 */
let server: RuntimeServer;
/** Calls the runtime's server received. */
let received = 0;

beforeAll(async () => {
  server = await startRuntimeServer({
    runtime: await createRuntime({ logger: silentLogger, runtimeId: "sealed" }),
    host: "127.0.0.1",
    port: 0,
    logger: silentLogger,
    interceptors: [
      (next) => (request) => {
        received++;
        return next(request);
      },
    ],
  });
});

afterAll(async () => {
  await server?.close(0);
});

async function refusal(call: () => Promise<unknown>): Promise<ConnectError> {
  try {
    await call();
  } catch (error) {
    return ConnectError.from(error);
  }
  throw new Error("the call on a closed route was answered");
}

describe("a closed route's transport", () => {
  it("refuses unary calls and streams with UNAVAILABLE, and never reaches the runtime again", async () => {
    const remote = createRemoteTransport({ url: `http://${server.h2Address}` });
    const clients = createRuntimeClients(remote.transport);
    expect((await clients.management.getRuntime({})).runtime?.runtimeId).toBe("sealed");
    remote.close();
    const before = received;

    const unary = await refusal(() => clients.management.getRuntime({}));
    expect(unary.code).toBe(Code.Unavailable);
    expect(unary.rawMessage).toMatch(/route .*closed/);
    const stream = await refusal(async () => {
      for await (const _ of clients.observation.watchRuntime({ runtimeId: "sealed" })) return;
    });
    expect(stream.code).toBe(Code.Unavailable);
    expect(stream.rawMessage).toMatch(/route .*closed/);
    expect(received).toBe(before);
  });
});
