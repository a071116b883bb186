import { createServer, type Http2Server } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, createFileRegistry, type DescMethod, type DescMethodUnary } from "@bufbuild/protobuf";
import { FieldDescriptorProto_Label as Label, FieldDescriptorProto_Type as Type, FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ServerReflection } from "../../../gen/grpc/reflection/v1/reflection_pb.js";
import { RuntimeHealth } from "../../../gen/worker_runtime/v1/backend_pb.js";
import { file_worker_runtime_v1_runtime, RuntimeSchema } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { WorkerCatalog } from "../../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerStatus } from "../../../gen/worker_runtime/v1/worker_pb.js";
import { createReflectionServices } from "../../../src/server/reflection.js";
import { jsonLines, runClient, runInTerminal } from "./client-support.js";

/**
 * The client against a Backend-shaped server that declares a minimal
 * RuntimeRegistry by descriptor only (ListRuntimes with the RegisteredRuntime
 * fields the client reads), served with the project's reflection service,
 * and routes ListWorkers by runtime_id. It shows the client needs nothing
 * but reflection to find a registry, and covers what the real Backend test
 * (backend.test.ts) cannot set up cheaply: several pages and an UNAVAILABLE
 * runtime.
 */

const registryFile = create(FileDescriptorProtoSchema, {
  name: "worker_runtime/v1/runtime_registry.proto",
  package: "worker_runtime.v1",
  syntax: "proto3",
  dependency: ["worker_runtime/v1/runtime.proto"],
  enumType: [
    {
      name: "RuntimeHealth",
      value: [
        { name: "RUNTIME_HEALTH_UNSPECIFIED", number: 0 },
        { name: "RUNTIME_HEALTH_READY", number: 1 },
        { name: "RUNTIME_HEALTH_UNAVAILABLE", number: 3 },
      ],
    },
  ],
  messageType: [
    {
      name: "RegisteredRuntime",
      field: [
        { name: "runtime_id", jsonName: "runtimeId", number: 1, type: Type.STRING, label: Label.OPTIONAL },
        { name: "embedded", jsonName: "embedded", number: 2, type: Type.BOOL, label: Label.OPTIONAL },
        { name: "endpoint", jsonName: "endpoint", number: 3, type: Type.STRING, label: Label.OPTIONAL },
        {
          name: "health",
          jsonName: "health",
          number: 4,
          type: Type.ENUM,
          typeName: ".worker_runtime.v1.RuntimeHealth",
          label: Label.OPTIONAL,
        },
        {
          name: "summary",
          jsonName: "summary",
          number: 9,
          type: Type.MESSAGE,
          typeName: ".worker_runtime.v1.Runtime",
          label: Label.OPTIONAL,
        },
      ],
    },
    {
      name: "ListRuntimesRequest",
      field: [
        { name: "page_size", jsonName: "pageSize", number: 1, type: Type.INT32, label: Label.OPTIONAL },
        { name: "page_token", jsonName: "pageToken", number: 2, type: Type.STRING, label: Label.OPTIONAL },
      ],
    },
    {
      name: "ListRuntimesResponse",
      field: [
        {
          name: "runtimes",
          jsonName: "runtimes",
          number: 1,
          type: Type.MESSAGE,
          typeName: ".worker_runtime.v1.RegisteredRuntime",
          label: Label.REPEATED,
        },
        { name: "next_page_token", jsonName: "nextPageToken", number: 2, type: Type.STRING, label: Label.OPTIONAL },
      ],
    },
  ],
  service: [
    {
      name: "RuntimeRegistry",
      method: [
        {
          name: "ListRuntimes",
          inputType: ".worker_runtime.v1.ListRuntimesRequest",
          outputType: ".worker_runtime.v1.ListRuntimesResponse",
        },
      ],
    },
  ],
});

const registry = createFileRegistry(registryFile, (name) =>
  name === "worker_runtime/v1/runtime.proto" ? file_worker_runtime_v1_runtime : undefined,
);

function isUnary(method: DescMethod): method is DescMethod & DescMethodUnary {
  return method.methodKind === "unary";
}

/** What the fake Backend lists, one runtime per page. */
let runtimes: { runtimeId: string; embedded: boolean; endpoint: string; health: number }[] = [];
let server: Http2Server;
let url: string;

beforeAll(async () => {
  const listRuntimes = registry.getService("worker_runtime.v1.RuntimeRegistry")?.methods[0];
  if (!listRuntimes || !isUnary(listRuntimes)) throw new Error("descriptor");
  const reflection = createReflectionServices(registry, ["worker_runtime.v1.RuntimeRegistry"]);
  const routes = (router: ConnectRouter): void => {
    router.service(ServerReflection, reflection.v1);
    router.rpc(listRuntimes, (request) => {
      const index = Number((request as unknown as { pageToken: string }).pageToken || "0");
      const entry = runtimes[index];
      const summary = entry ? create(RuntimeSchema, { runtimeId: entry.runtimeId, version: "9.9.9" }) : undefined;
      return create(listRuntimes.output, {
        runtimes: entry ? [{ ...entry, summary }] : [],
        nextPageToken: index + 1 < runtimes.length ? String(index + 1) : "",
      } as never);
    });
    router.service(WorkerCatalog, {
      // As a Backend does: one runtime's workers, or with no runtime_id every READY runtime's, naming the others as failed.
      listWorkers: (request) => {
        const listed = request.runtimeId ? runtimes.filter((r) => r.runtimeId === request.runtimeId) : runtimes;
        const ready = request.runtimeId ? listed : listed.filter((r) => r.health === RuntimeHealth.READY);
        return {
          workers: ready.map((r) => ({ ref: { runtimeId: r.runtimeId, workerId: `w-on-${r.runtimeId}` }, status: WorkerStatus.IDLE })),
          failedRuntimes: listed
            .filter((r) => !ready.includes(r))
            .map((r) => ({ runtimeId: r.runtimeId, health: r.health, message: "runtime unavailable" })),
        };
      },
    });
  };
  server = createServer(connectNodeAdapter({ routes }));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server?.close(resolve));
});

describe("against a Backend (registry found by reflection)", () => {
  it("lists every runtime with its health; with several, lists workers across them and asks for --runtime elsewhere", async () => {
    runtimes = [
      { runtimeId: "rt-a", embedded: true, endpoint: "", health: 1 },
      { runtimeId: "rt-b", embedded: false, endpoint: "http://10.0.0.2:7070", health: 3 },
    ];
    const list = await runClient(["runtimes", "list"], { server: url });
    expect(list.code).toBe(0);
    expect(list.stdout).toBe("rt-a\tREADY\tembedded\t9.9.9\t\nrt-b\tUNAVAILABLE\thttp://10.0.0.2:7070\t9.9.9\t\n");
    const json = jsonLines((await runClient(["runtimes", "list", "--output", "json"], { server: url })).stdout);
    expect(json.map((entry) => entry.health)).toEqual(["RUNTIME_HEALTH_READY", "RUNTIME_HEALTH_UNAVAILABLE"]);

    // workers list needs no --runtime: the Backend lists across, and the unreachable runtime is named (exit 3: partial).
    const across = await runClient(["workers", "list"], { server: url });
    expect(across).toMatchObject({ code: 3, stdout: "rt-a\tw-on-rt-a\tIDLE\t\tUNSPECIFIED\t\t\t\t\n" });
    expect(across.stderr).toBe("worker-runtime: runtime rt-b not listed: runtime unavailable\n");
    runtimes[1]!.health = RuntimeHealth.READY;
    const all = await runClient(["workers", "list"], { server: url });
    expect(all).toMatchObject({
      code: 0,
      stderr: "",
      stdout: "rt-a\tw-on-rt-a\tIDLE\t\tUNSPECIFIED\t\t\t\t\nrt-b\tw-on-rt-b\tIDLE\t\tUNSPECIFIED\t\t\t\t\n",
    });
    const ambiguous = await runClient(["runtime", "info"], { server: url });
    expect(ambiguous.code).toBe(2);
    expect(ambiguous.stderr).toContain("the server has 2 runtimes (rt-a, rt-b); choose one with --runtime");
    const routed = await runClient(["workers", "list", "--runtime", "rt-b"], { server: url });
    expect(routed).toMatchObject({ code: 0, stdout: "w-on-rt-b\tIDLE\t\tUNSPECIFIED\t\t\t\t\n" });
    const info = await runClient(["runtime", "info", "--runtime", "rt-b", "--output", "json"], { server: url });
    expect(jsonLines(info.stdout)[0]).toMatchObject({ runtimeId: "rt-b", version: "9.9.9" });
  });

  it("runtimes list on a terminal shows - for what the registry left empty; JSON keeps it as the registry sent it", async () => {
    runtimes = [
      { runtimeId: "rt-a", embedded: true, endpoint: "", health: 1 },
      { runtimeId: "rt-c", embedded: false, endpoint: "", health: 2 },
    ];
    const tty = await runInTerminal(["runtimes", "list"], { WORKER_RUNTIME_SERVER: url, NO_COLOR: "1" });
    expect(tty.code).toBe(0);
    const [header = "", ...rows] = tty.screen.trimEnd().split("\n");
    const cells = (row: string) => [header.indexOf("ENDPOINT"), header.indexOf("WORKERS")].map((at) => row.slice(at).split(/\s+/)[0]);
    expect(rows.map(cells)).toEqual([
      ["embedded", "-"],
      ["-", "-"],
    ]);
    const json = jsonLines((await runClient(["runtimes", "list", "--output", "json"], { server: url })).stdout);
    expect(json.map((entry) => entry.endpoint)).toEqual([undefined, undefined]);
  });

  it("fills in runtime_id when the Backend has one runtime", async () => {
    runtimes = [{ runtimeId: "rt-only", embedded: true, endpoint: "", health: 1 }];
    const routed = await runClient(["workers", "list", "--output", "json"], { server: url });
    expect(routed.code).toBe(0);
    expect(jsonLines(routed.stdout)[0]).toMatchObject({ ref: { runtimeId: "rt-only", workerId: "w-on-rt-only" } });
  });
});
