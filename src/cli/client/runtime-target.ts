import { fromJson, type JsonObject } from "@bufbuild/protobuf";
import { RuntimeSchema, type Runtime } from "../../../gen/worker_runtime/v1/runtime_pb.js";
import { CommandLineError } from "./command-line-error.js";
import type { Connection } from "./connection.js";
import { listRegisteredRuntimes } from "./registry-probe.js";

/** One runtime behind the server, as `runtimes list` shows it. */
export interface RuntimeListing {
  runtimeId: string;
  /** RUNTIME_HEALTH_* name from a Backend; READY for a runtime that answered. */
  health: string;
  /** Where the Backend reaches it ("embedded" for its own); the server URL for a runtime. */
  endpoint: string;
  /** The runtime's summary, when known. */
  summary: Runtime | undefined;
  /** What the server said, for `--output json`. */
  json: JsonObject;
}

/**
 * The runtimes behind a server: a Backend's registry when the server has
 * one, else the runtime itself (GetRuntime).
 */
export async function discoverRuntimes(connection: Connection, server: string): Promise<RuntimeListing[]> {
  const registered = await listRegisteredRuntimes(connection.transport);
  if (registered !== undefined) return registered.map(fromRegistry);
  const { runtime } = await connection.clients.management.getRuntime({});
  if (runtime === undefined) return [];
  return [
    {
      runtimeId: runtime.runtimeId,
      health: "RUNTIME_HEALTH_READY",
      endpoint: server,
      summary: runtime,
      json: { runtimeId: runtime.runtimeId, embedded: false, endpoint: server, health: "RUNTIME_HEALTH_READY" },
    },
  ];
}

function fromRegistry(entry: JsonObject): RuntimeListing {
  const summary = typeof entry.summary === "object" && entry.summary !== null && !Array.isArray(entry.summary) ? entry.summary : undefined;
  return {
    runtimeId: typeof entry.runtimeId === "string" ? entry.runtimeId : "",
    health: typeof entry.health === "string" ? entry.health : "RUNTIME_HEALTH_UNSPECIFIED",
    endpoint: entry.embedded === true ? "embedded" : typeof entry.endpoint === "string" ? entry.endpoint : "",
    summary: summary ? fromJson(RuntimeSchema, summary, { ignoreUnknownFields: true }) : undefined,
    json: entry,
  };
}

/** The only runtime, or a usage error asking for --runtime. */
export function pickRuntime(runtimes: readonly RuntimeListing[]): string {
  const [only] = runtimes;
  if (runtimes.length === 1 && only !== undefined) return only.runtimeId;
  if (runtimes.length === 0) throw new CommandLineError("the server has no runtimes registered");
  throw new CommandLineError(
    `the server has ${runtimes.length} runtimes (${runtimes.map((r) => r.runtimeId).join(", ")}); choose one with --runtime`,
  );
}
