import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RuntimeManagement } from "../../../gen/worker_runtime/v1/runtime_management_pb.js";
import { WorkerCatalog } from "../../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerObservation } from "../../../gen/worker_runtime/v1/worker_observation_pb.js";
import { jsonLines, runClient } from "./client-support.js";

/**
 * The CLI against a runtime of a newer build, whose enums have values this
 * build does not know (a new worker status, store kind, severity...). The
 * wire carries them as numbers; the CLI must name them as unknown with the
 * number, not print an empty cell that reads as "no status" or crash.
 */

/** A value no enum of this build has (typed as any enum the fake answers with). */
const NEWER = 99 as never;
let server: Http2Server;
let url: string;

beforeAll(async () => {
  const routes = (router: ConnectRouter): void => {
    router.service(RuntimeManagement, {
      getRuntime: () => ({
        runtime: { runtimeId: "rt-new", version: "99.0.0", status: NEWER, storeKind: NEWER },
      }),
      listDiagnostics: () => ({ diagnostics: [{ severity: NEWER, code: "newer.thing", message: "from the future" }] }),
      listAllocations: () => ({ allocations: [{ holder: { runtimeId: "rt-new", workerId: "w1" }, root: "ws", mode: NEWER }] }),
    });
    router.service(WorkerObservation, {
      // Entry 2's content is a field this build has no name for (a newer runtime's new kind of entry): it travels as unknown bytes.
      readTranscript: () => ({
        entries: [
          { seq: 1n, content: { case: "userMessage", value: { text: "hello" } } },
          { seq: 2n, $unknown: [{ no: 99, wireType: 2, data: new Uint8Array([2, 0x68, 0x69]) }] },
          { seq: 3n, content: { case: "notice", value: { code: "c", message: "after" } } },
        ],
      }),
    });
    router.service(WorkerCatalog, {
      listWorkers: () => ({
        workers: [{ ref: { runtimeId: "rt-new", workerId: "w1" }, status: NEWER, connectivity: { state: NEWER } }],
      }),
    });
  };
  server = createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
});

describe("enum values from a newer runtime", () => {
  it("runtime info names an unknown status and store kind with their numbers", async () => {
    const info = await runClient(["runtime", "info"], { server: url });
    expect(info).toMatchObject({ code: 0, stderr: "" });
    expect(info.stdout).toMatch(/^status: UNKNOWN\(99\)$/m);
    expect(info.stdout).toMatch(/^store: UNKNOWN\(99\)$/m);
  });

  it("workers list names an unknown status and connectivity; JSON carries the number", async () => {
    const list = await runClient(["workers", "list"], { server: url });
    expect(list).toMatchObject({ code: 0, stderr: "" });
    expect(list.stdout.split("\t").slice(0, 4)).toEqual(["w1", "UNKNOWN(99)", "", "UNKNOWN(99)"]);
    const json = jsonLines((await runClient(["workers", "list", "--output", "json"], { server: url })).stdout);
    expect(json[0]).toMatchObject({ status: NEWER, connectivity: { state: NEWER } });
  });

  it("diagnostics and allocations name an unknown severity and mode", async () => {
    const diagnostics = await runClient(["runtime", "diagnostics"], { server: url });
    expect(diagnostics).toMatchObject({ code: 0, stderr: "" });
    expect(diagnostics.stdout.split("\t")[1]).toBe("unknown(99)");
    const allocations = await runClient(["runtime", "allocations"], { server: url });
    expect(allocations).toMatchObject({ code: 0, stderr: "" });
    expect(allocations.stdout.split("\t")[3]).toBe("unknown(99)");
  });

  it("transcript shows an entry of a kind it does not know as such, between the ones it knows", async () => {
    const transcript = await runClient(["transcript", "w1"], { server: url });
    expect(transcript).toMatchObject({ code: 0, stderr: "" });
    expect(transcript.stdout).toBe(
      "> hello\n[entry 2: a kind of entry this client does not know (written by a newer runtime); upgrade the client to see it]\n! c: after\n",
    );
  });
});
