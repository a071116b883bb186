import type { DescMessage, DescMethodUnary, DescService } from "@bufbuild/protobuf";
import { createMethodImplSpec, type Interceptor, type MethodImpl, type MethodImplSpec } from "@connectrpc/connect";
import { invokeUnaryImplementation } from "@connectrpc/connect/protocol";
import type { Logger } from "../runtime/index.js";
import {
  binarySerialization,
  endGrpcResponse,
  type HandlerOptions,
  isGone,
  nodeHeaders,
  openGrpcCall,
  serializedFrame,
  singleRequest,
  CALL_COMPLETE,
} from "./grpc-call-setup.js";
import type { GrpcCallHandler } from "./grpc-direct-calls.js";

/**
 * A unary call over binary gRPC, answered straight to the HTTP/2 response:
 * read the one request, run the interceptors and the implementation (with
 * connect's own `invokeUnaryImplementation`, so both see exactly what they
 * see on connect's path), then header, the one framed message and the
 * trailers. connect's handler passes the answer through an output pipeline
 * of down-levelled async generators (serialize, compress, join, catch) and
 * a universal response converted to Node's; on a SendInput that was about
 * as much CPU as the runtime's own work for the call (issue 9).
 */
export function createUnaryHandler(
  service: DescService,
  method: DescMethodUnary,
  impl: MethodImpl<DescMethodUnary>,
  options: HandlerOptions,
  interceptors: Interceptor[],
  logger: Logger,
): GrpcCallHandler {
  const { input, output } = binarySerialization(method, options);
  const outputSchema: DescMessage = method.output;
  const spec = createMethodImplSpec(method, impl) as MethodImplSpec & { kind: "unary" };
  return async (request, response) => {
    const { context, compression, messages } = openGrpcCall(service, method, input, options, request);
    let failure: unknown;
    let frame: Uint8Array | undefined;
    try {
      const message = await singleRequest(messages, "unary");
      const answer = await invokeUnaryImplementation(spec, context, message, interceptors);
      frame = await serializedFrame(answer, outputSchema, output, compression.response, options);
    } catch (error) {
      failure = error;
    }
    // As connect does once the response is done: the call's signal tells anything still listening.
    context.abort(failure ?? CALL_COMPLETE);
    if (!isGone(response)) {
      response.writeHead(200, nodeHeaders(context.responseHeader));
      if (frame) response.write(frame);
    }
    endGrpcResponse(response, context, failure, logger);
  };
}
