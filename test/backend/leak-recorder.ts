import { toJson } from "@bufbuild/protobuf";
import { ConnectError, type Interceptor } from "@connectrpc/connect";
import { ErrorDetailSchema } from "../../gen/worker_runtime/v1/errors_pb.js";

/**
 * Records, as text, every response message and every error a client
 * receives (message, code, typed detail, headers and trailers), so a test
 * can scan everything the Backend ever sent for secrets.
 */
export interface LeakRecorder {
  readonly interceptor: Interceptor;
  /** Everything recorded so far. */
  readonly texts: string[];
  /** The recorded texts containing `needle`. */
  find(needle: string): string[];
}

export function createLeakRecorder(): LeakRecorder {
  const texts: string[] = [];
  const recordError = (error: unknown): void => {
    const e = ConnectError.from(error);
    const details = e.findDetails(ErrorDetailSchema).map((d) => JSON.stringify(toJson(ErrorDetailSchema, d)));
    texts.push(`error ${e.code} ${e.rawMessage} ${details.join(" ")} ${[...e.metadata.entries()].map(([k, v]) => `${k}=${v}`).join(" ")}`);
  };
  const interceptor: Interceptor = (next) => async (request) => {
    try {
      const response = await next(request);
      texts.push([...response.header.entries()].map(([k, v]) => `${k}=${v}`).join(" "));
      if (!response.stream) {
        texts.push(JSON.stringify(toJson(request.method.output, response.message)));
        texts.push([...response.trailer.entries()].map(([k, v]) => `${k}=${v}`).join(" "));
        return response;
      }
      const messages = response.message;
      async function* recorded(): AsyncIterable<typeof messages extends AsyncIterable<infer M> ? M : never> {
        try {
          for await (const message of messages) {
            texts.push(JSON.stringify(toJson(request.method.output, message)));
            yield message;
          }
        } catch (error) {
          recordError(error);
          throw error;
        }
      }
      return { ...response, message: recorded() };
    } catch (error) {
      recordError(error);
      throw error;
    }
  };
  return { interceptor, texts, find: (needle) => texts.filter((text) => text.includes(needle)) };
}
