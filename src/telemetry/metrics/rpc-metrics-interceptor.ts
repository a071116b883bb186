import type { DescMethod } from "@bufbuild/protobuf";
import { ConnectError, type Interceptor, type StreamResponse } from "@connectrpc/connect";
import type { Histogram } from "prom-client";
import { codeNameOf, GRPC_CODE_NAMES } from "./grpc-code-names.js";

type HistogramChild = ReturnType<Histogram["labels"]>;

/**
 * A Connect interceptor that observes each call's duration into
 * `histogram`, labelled `rpc_method` = "service/method" and
 * `rpc_response_status_code` = the gRPC code name, plus any `fixed` labels.
 * A server-streaming call is measured until its stream ends: completed, failed,
 * or abandoned by the consumer or the call's signal (CANCELLED, or
 * DEADLINE_EXCEEDED when its deadline ran out). With
 * `unaryOnly`, streaming calls are not observed (a watch lasting hours says
 * nothing about latency). Label sets are bound once per method and code.
 */
export function createRpcMetricsInterceptor(
  histogram: Histogram,
  fixed: Record<string, string> = {},
  options: {
    unaryOnly?: boolean;
    /** Told each label set when it is first bound, so an owner can remove its series later. */
    onBind?: (labels: Record<string, string>) => void;
  } = {},
): Interceptor {
  const children = new WeakMap<DescMethod, (HistogramChild | undefined)[]>();
  const childFor = (method: DescMethod, code: number): HistogramChild => {
    let byCode = children.get(method);
    if (!byCode) {
      byCode = [];
      children.set(method, byCode);
    }
    let child = byCode[code];
    if (!child) {
      const labels = {
        ...fixed,
        rpc_method: `${method.parent.typeName}/${method.name}`,
        rpc_response_status_code: GRPC_CODE_NAMES[code] ?? "UNKNOWN",
      };
      child = histogram.labels(labels);
      byCode[code] = child;
      options.onBind?.(labels);
    }
    return child;
  };
  return (next) => async (request) => {
    const streaming = request.method.methodKind === "server_streaming" || request.method.methodKind === "bidi_streaming";
    if (streaming && options.unaryOnly) return next(request);
    const started = performance.now();
    const observe = (codeName: string): void => {
      const code = Math.max(0, GRPC_CODE_NAMES.indexOf(codeName));
      childFor(request.method, code).observe((performance.now() - started) / 1000);
    };
    let response: Awaited<ReturnType<typeof next>>;
    try {
      response = await next(request);
    } catch (error) {
      observe(codeNameOf(error));
      throw error;
    }
    if (!response.stream) {
      observe("OK");
      return response;
    }
    return { ...response, message: untilEnd(response, request.signal, observe) } as StreamResponse;
  };
}

/**
 * The stream's messages, reporting once how it ended: OK when it ends, the
 * error's code when it throws, CANCELLED when its consumer stops early or
 * the call's signal aborts (a client that went away may never resume it).
 */
function untilEnd(response: StreamResponse, signal: AbortSignal, observe: (codeName: string) => void): AsyncIterable<unknown> {
  let ended = false;
  const end = (codeName: string): void => {
    if (ended) return;
    ended = true;
    signal.removeEventListener("abort", onAbort);
    observe(codeName);
  };
  // A deadline aborts with DEADLINE_EXCEEDED as its reason; a client that went away is CANCELLED.
  const onAbort = (): void => end(signal.reason instanceof ConnectError ? codeNameOf(signal.reason) : "CANCELLED");
  signal.addEventListener("abort", onAbort, { once: true });
  return {
    [Symbol.asyncIterator]() {
      const source = response.message[Symbol.asyncIterator]();
      return {
        next: (value?: unknown) =>
          source.next(value).then(
            (result) => {
              if (result.done) end("OK");
              return result;
            },
            (error: unknown) => {
              end(codeNameOf(error));
              throw error;
            },
          ),
        return: (value?: unknown) => {
          end("CANCELLED");
          return source.return ? source.return(value) : Promise.resolve({ done: true as const, value });
        },
        throw: (error?: unknown) => {
          end(codeNameOf(error));
          return source.throw ? source.throw(error) : Promise.reject(error);
        },
      };
    },
  };
}
