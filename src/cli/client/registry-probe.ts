import {
  create,
  createFileRegistry,
  fromBinary,
  toJson,
  type DescFile,
  type DescMessage,
  type DescMethod,
  type DescMethodUnary,
  type JsonObject,
  type JsonValue,
} from "@bufbuild/protobuf";
import {
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_timestamp,
  file_google_protobuf_wrappers,
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type FileDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, createClient, type Transport } from "@connectrpc/connect";
import { ServerReflection, ServerReflectionRequestSchema } from "../../../gen/grpc/reflection/v1/reflection_pb.js";

/** The Backend's registry service, which a plain runtime does not serve. */
export const REGISTRY_SERVICE = "worker_runtime.v1.RuntimeRegistry";

/** One runtime a Backend knows, as its RegisteredRuntime JSON (proto3 JSON, camelCase). */
export type RegisteredRuntimeJson = JsonObject;

const WELL_KNOWN: readonly DescFile[] = [
  file_google_protobuf_timestamp,
  file_google_protobuf_duration,
  file_google_protobuf_empty,
  file_google_protobuf_struct,
  file_google_protobuf_wrappers,
];

/**
 * Lists the runtimes of a Backend, or returns undefined when the server is
 * a plain runtime. The registry's schema is read from the server through
 * gRPC reflection rather than from generated code, so this client works
 * with any Backend that serves the registry. A server whose reflection does
 * not know the registry, or that answers ListRuntimes with UNIMPLEMENTED,
 * or that has no reflection, counts as a runtime.
 */
export async function listRegisteredRuntimes(transport: Transport, signal?: AbortSignal): Promise<RegisteredRuntimeJson[] | undefined> {
  const listRuntimes = await registryMethod(transport, signal);
  if (listRuntimes === undefined) return undefined;
  const runtimes: RegisteredRuntimeJson[] = [];
  let pageToken = "";
  do {
    let response: Awaited<ReturnType<typeof transport.unary<DescMessage, DescMessage>>>;
    try {
      response = await transport.unary(listRuntimes, signal, undefined, undefined, { pageToken });
    } catch (error) {
      // A runtime's reflection may describe the registry (its descriptors include every file) without serving it.
      if (ConnectError.from(error).code === Code.Unimplemented) return undefined;
      throw error;
    }
    const page = toJson(listRuntimes.output, response.message) as JsonObject;
    for (const entry of asArray(page.runtimes)) if (isObject(entry)) runtimes.push(entry);
    pageToken = typeof page.nextPageToken === "string" ? page.nextPageToken : "";
  } while (pageToken !== "");
  return runtimes;
}

async function registryMethod(transport: Transport, signal?: AbortSignal): Promise<DescMethodUnary | undefined> {
  const files = await filesContaining(transport, REGISTRY_SERVICE, signal);
  if (files === undefined) return undefined;
  if (!files.some((file) => file.service.some((service) => `${file.package}.${service.name}` === REGISTRY_SERVICE))) return undefined;
  // Servers may leave out the well-known types (every client has them), so they are added here.
  const received = new Set(files.map((file) => file.name));
  const wellKnown = WELL_KNOWN.filter((file) => !received.has(file.proto.name)).map((file) => file.proto);
  const registry = createFileRegistry(create(FileDescriptorSetSchema, { file: inDependencyOrder([...wellKnown, ...files]) }));
  const method = registry.getService(REGISTRY_SERVICE)?.methods.find((candidate) => candidate.name === "ListRuntimes");
  return method !== undefined && isUnary(method) ? method : undefined;
}

/** Files with every file after its imports, as a FileDescriptorSet must list them (reflection sends the asked-for file first). */
function inDependencyOrder(files: readonly FileDescriptorProto[]): FileDescriptorProto[] {
  const ordered: FileDescriptorProto[] = [];
  const placed = new Set<string>();
  let pending = [...files];
  while (pending.length > 0) {
    const ready = pending.filter((file) =>
      file.dependency.every((name) => placed.has(name) || !files.some((other) => other.name === name)),
    );
    // A cycle or a missing import: keep the rest in order and let the registry name the problem.
    if (ready.length === 0) return [...ordered, ...pending];
    for (const file of ready) placed.add(file.name);
    ordered.push(...ready);
    pending = pending.filter((file) => !placed.has(file.name));
  }
  return ordered;
}

function isUnary(method: DescMethod): method is DescMethod & DescMethodUnary {
  return method.methodKind === "unary";
}

/** The file declaring `symbol` and its dependencies, or undefined if the server does not know it. */
async function filesContaining(transport: Transport, symbol: string, signal?: AbortSignal): Promise<FileDescriptorProto[] | undefined> {
  const reflection = createClient(ServerReflection, transport);
  const requests = (async function* () {
    yield create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: symbol } });
  })();
  try {
    for await (const response of reflection.serverReflectionInfo(requests, { signal })) {
      const answer = response.messageResponse;
      if (answer.case !== "fileDescriptorResponse") return undefined;
      return answer.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
    }
    return undefined;
  } catch (error) {
    const code = ConnectError.from(error).code;
    // No reflection: not a Backend we can recognise; auth and transport failures still surface.
    if (code === Code.Unimplemented || code === Code.NotFound) return undefined;
    throw error;
  }
}

function asArray(value: JsonValue | undefined): JsonValue[] {
  return Array.isArray(value) ? value : [];
}

function isObject(value: JsonValue): value is JsonObject {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
