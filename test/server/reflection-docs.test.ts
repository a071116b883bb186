import { create, createFileRegistry, fromBinary, type DescFile } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema, FileDescriptorSetSchema, type FileDescriptorProto } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { descriptorSetBase64 } from "../../gen/descriptor-set.js";
import { file_google_rpc_status } from "../../gen/google/rpc/status_pb.js";
import { ServerReflection, ServerReflectionRequestSchema } from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";
import { file_worker_runtime_v1_runtime_management } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { file_worker_runtime_v1_worker_catalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { file_worker_runtime_v1_worker_interaction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { file_worker_runtime_v1_worker_observation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";
import { makeTransport, PROTOCOLS, startHarness, type Harness } from "../support/harness.js";
import { ScriptedBackend } from "../support/scripted-backend.js";

/**
 * Reflection serves the descriptors with their source comments, so grpcurl
 * `describe` and `buf curl` show the documentation written in the protos,
 * and serves google/rpc/status.proto so a client can decode error details.
 */

let harness: Harness;
const sessions: Http2SessionManager[] = [];

beforeAll(async () => {
  harness = await startHarness({ executionBackend: new ScriptedBackend() });
});

afterAll(async () => {
  for (const session of sessions) session.abort();
  await harness.close();
});

/** The leading comment of the element at `path` (see descriptor.proto's SourceCodeInfo). */
function commentAt(file: FileDescriptorProto, path: number[]): string | undefined {
  return file.sourceCodeInfo?.location.find((location) => location.path.join(".") === path.join("."))?.leadingComments;
}

const SERVICE_FIELD = 6;
const MESSAGE_FIELD = 4;

async function reflect(protocol: "grpc" | "connect", symbol: string): Promise<FileDescriptorProto[]> {
  const session = new Http2SessionManager(harness.baseUrl);
  sessions.push(session);
  const client = createClient(ServerReflection, makeTransport(protocol, harness.baseUrl, session));
  async function* requests() {
    yield create(ServerReflectionRequestSchema, { messageRequest: { case: "fileContainingSymbol", value: symbol } });
  }
  for await (const response of client.serverReflectionInfo(requests())) {
    if (response.messageResponse.case !== "fileDescriptorResponse") throw new Error(`unexpected ${response.messageResponse.case}`);
    return response.messageResponse.value.fileDescriptorProto.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes));
  }
  return [];
}

describe("reflection", () => {
  it("serves the service, method and message comments over gRPC (as grpcurl and buf curl use it)", async () => {
    const files = await reflect("grpc", "worker_runtime.v1.WorkerCatalog");
    const catalog = files.find((file) => file.name === "worker_runtime/v1/worker_catalog.proto");
    if (!catalog) throw new Error("worker_catalog.proto not served");
    expect(commentAt(catalog, [SERVICE_FIELD, 0])).toContain("WorkerCatalog creates, finds, stops and deletes Workers.");
    const createIndex = catalog.service[0]?.method.findIndex((method) => method.name === "CreateWorker") ?? -1;
    expect(commentAt(catalog, [SERVICE_FIELD, 0, 2, createIndex])?.trim().length).toBeGreaterThan(0);
    const request = catalog.messageType.findIndex((message) => message.name === "CreateWorkerRequest");
    expect(commentAt(catalog, [MESSAGE_FIELD, request])).toContain("CreateWorkerRequest describes a new Worker.");
  });

  it("serves google/rpc/status.proto with its comments", async () => {
    const [status] = await reflect("grpc", "google.rpc.Status");
    expect(status?.name).toBe("google/rpc/status.proto");
    expect(commentAt(status as FileDescriptorProto, [MESSAGE_FIELD, 0])).toContain("worker_runtime.v1.ErrorDetail");
  });

  it.each(PROTOCOLS)("serves the comments over v1alpha too (%s)", async (protocol) => {
    const session = new Http2SessionManager(harness.baseUrl);
    sessions.push(session);
    const client = createClient(v1alpha.ServerReflection, makeTransport(protocol, harness.baseUrl, session));
    async function* requests() {
      yield create(v1alpha.ServerReflectionRequestSchema, {
        messageRequest: { case: "fileByFilename", value: "worker_runtime/v1/runtime_management.proto" },
      });
    }
    for await (const response of client.serverReflectionInfo(requests())) {
      if (response.messageResponse.case !== "fileDescriptorResponse") throw new Error(`unexpected ${response.messageResponse.case}`);
      const file = fromBinary(FileDescriptorProtoSchema, response.messageResponse.value.fileDescriptorProto[0] ?? new Uint8Array());
      expect(commentAt(file, [SERVICE_FIELD, 0])?.trim().length).toBeGreaterThan(0);
      return;
    }
    throw new Error("no answer");
  });

  it("serves descriptors that match the generated code (the descriptor set is not stale)", () => {
    const documented = createFileRegistry(fromBinary(FileDescriptorSetSchema, Buffer.from(descriptorSetBase64, "base64")));
    const files: DescFile[] = [
      file_worker_runtime_v1_runtime_management,
      file_worker_runtime_v1_worker_catalog,
      file_worker_runtime_v1_worker_interaction,
      file_worker_runtime_v1_worker_observation,
      file_google_rpc_status,
    ];
    const shape = (file: DescFile | undefined): string[] =>
      [...(file?.messages ?? []), ...(file?.dependencies.flatMap((d) => d.messages) ?? [])].flatMap((message) =>
        message.fields.map((field) => `${message.typeName}.${field.name}=${field.number}:${field.fieldKind}`),
      );
    for (const file of files) expect(shape(documented.getFile(file.proto.name)), file.proto.name).toEqual(shape(file));
  });
});
