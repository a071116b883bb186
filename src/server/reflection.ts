import { create, fromBinary, toBinary, type DescFile, type FileRegistry } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import {
  ErrorResponseSchema as v1ErrorSchema,
  ExtensionNumberResponseSchema as v1ExtensionsSchema,
  FileDescriptorResponseSchema as v1FilesSchema,
  ListServiceResponseSchema as v1ListSchema,
  type ServerReflection,
  ServerReflectionRequestSchema,
  ServerReflectionResponseSchema,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from "../../gen/grpc/reflection/v1/reflection_pb.js";
import * as v1alpha from "../../gen/grpc/reflection/v1alpha/reflection_pb.js";

/** gRPC status codes used in reflection error responses. */
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/**
 * gRPC server reflection, so grpcurl and `buf curl` work with no proto files
 * at hand. Every answer carries the requested file and its dependencies,
 * each file at most once per stream. v1alpha is wire-identical to v1, so
 * its requests and answers are re-read through the v1 implementation.
 */
export function createReflectionServices(
  registry: FileRegistry,
  serviceNames: readonly string[],
): { v1: ServiceImpl<typeof ServerReflection>; v1alpha: ServiceImpl<typeof v1alpha.ServerReflection> } {
  return {
    v1: {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const request of requests) yield respond(registry, serviceNames, request, sent);
      },
    },
    v1alpha: {
      async *serverReflectionInfo(requests) {
        const sent = new Set<string>();
        for await (const request of requests) {
          const asV1 = fromBinary(ServerReflectionRequestSchema, toBinary(v1alpha.ServerReflectionRequestSchema, request));
          const answer = respond(registry, serviceNames, asV1, sent);
          yield fromBinary(v1alpha.ServerReflectionResponseSchema, toBinary(ServerReflectionResponseSchema, answer));
        }
      },
    },
  };
}

function respond(
  registry: FileRegistry,
  serviceNames: readonly string[],
  request: ServerReflectionRequest,
  sent: Set<string>,
): ServerReflectionResponse {
  const reply = (messageResponse: ServerReflectionResponse["messageResponse"]): ServerReflectionResponse =>
    create(ServerReflectionResponseSchema, { validHost: request.host, originalRequest: request, messageResponse });
  const error = (errorCode: number, errorMessage: string): ServerReflectionResponse =>
    reply({ case: "errorResponse", value: create(v1ErrorSchema, { errorCode, errorMessage }) });
  const files = (file: DescFile | undefined): ServerReflectionResponse =>
    file
      ? reply({ case: "fileDescriptorResponse", value: create(v1FilesSchema, { fileDescriptorProto: withDependencies(file, sent) }) })
      : error(NOT_FOUND, "not found");
  const message = request.messageRequest;
  switch (message.case) {
    case "listServices":
      return reply({
        case: "listServicesResponse",
        value: create(v1ListSchema, { service: serviceNames.map((name) => ({ name })) }),
      });
    case "fileByFilename":
      return files(registry.getFile(message.value));
    case "fileContainingSymbol":
      return files(fileOfSymbol(registry, message.value));
    case "fileContainingExtension":
      return error(NOT_FOUND, "no extensions are registered");
    case "allExtensionNumbersOfType":
      if (!registry.getMessage(message.value)) return error(NOT_FOUND, "type not found");
      return reply({
        case: "allExtensionNumbersResponse",
        value: create(v1ExtensionsSchema, { baseTypeName: message.value, extensionNumber: [] }),
      });
    default:
      return error(UNIMPLEMENTED, "unsupported reflection request");
  }
}

/** Finds the file declaring a symbol (message, enum, service, method or field). */
function fileOfSymbol(registry: FileRegistry, symbol: string): DescFile | undefined {
  const direct = registry.get(symbol);
  if (direct) return direct.file;
  const owner = registry.get(symbol.slice(0, symbol.lastIndexOf(".")));
  if (owner?.kind === "service" || owner?.kind === "message") return owner.file;
  return undefined;
}

/** Serialises a file and its transitive dependencies not yet sent on this stream. */
function withDependencies(file: DescFile, sent: Set<string>): Uint8Array[] {
  const out: Uint8Array[] = [];
  const visit = (f: DescFile, force: boolean): void => {
    if (sent.has(f.name) && !force) return;
    sent.add(f.name);
    out.push(toBinary(FileDescriptorProtoSchema, f.proto));
    for (const dependency of f.dependencies) visit(dependency, false);
  };
  visit(file, true);
  return out;
}
