import type { DescMessage, DescMethodServerStreaming, DescService, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import {
  createClient as createConnectClient,
  type CallOptions,
  type Client,
  type StreamResponse,
  type Transport,
} from "@connectrpc/connect";
import { createAsyncIterable } from "@connectrpc/connect/protocol";

/**
 * connect's `createClient`, with the same signature and the same client,
 * except that a server-streaming method's messages are handed on without
 * connect's wrapper: an async generator compiled to ES2017 helpers, which
 * costs several promises and closures per message (about 13 % of a
 * watcher's CPU in the issue-9 profile). Unary, client- and bidi-streaming
 * methods are connect's own.
 *
 * What a caller sees is connect's: the call starts at once; `onHeader` runs
 * before the first message and `onTrailer` after the last; an error is
 * thrown once, after which the stream is done; the iterable has no
 * `return()` or `throw()`, so breaking out of a `for await` does not cancel
 * the call (abort its signal to end it); every `[Symbol.asyncIterator]()`
 * reads the same call.
 */
export function createClient<T extends DescService>(service: T, transport: Transport): Client<T> {
  const client = createConnectClient(service, transport) as Record<string, unknown>;
  for (const method of service.methods) {
    if (method.methodKind === "server_streaming")
      client[method.localName] = serverStreamingFn(transport, method as DescMethodServerStreaming);
  }
  return client as Client<T>;
}

function serverStreamingFn<I extends DescMessage, O extends DescMessage>(
  transport: Transport,
  method: DescMethodServerStreaming<I, O>,
): (request: MessageInitShape<I>, options?: CallOptions) => AsyncIterable<MessageShape<O>> {
  return (request, options) => {
    const response = transport.stream(
      method,
      options?.signal,
      options?.timeoutMs,
      options?.headers,
      createAsyncIterable([request]),
      options?.contextValues,
    );
    const messages = new ServerStreamMessages(response, options);
    return { [Symbol.asyncIterator]: () => messages };
  };
}

const DONE: IteratorReturnResult<undefined> = { done: true, value: undefined };

/**
 * The messages of one server-streaming call, in the order and with the
 * callbacks of connect's wrapper: a message is the transport's own
 * iterator result, passed on as it is (one `then` per message, with
 * handlers bound once per call).
 */
class ServerStreamMessages<I extends DescMessage, O extends DescMessage> {
  private messages: AsyncIterator<MessageShape<O>> | undefined;
  private trailer: Headers | undefined;
  private finished = false;
  /** A `next()` still running; a later one waits for it (connect's generator queues them too). */
  private pending: Promise<IteratorResult<MessageShape<O>>> | undefined;
  private readonly onResult = (result: IteratorResult<MessageShape<O>>): IteratorResult<MessageShape<O>> => {
    this.pending = undefined;
    if (!result.done) return result;
    this.finished = true;
    this.options?.onTrailer?.(this.trailer as Headers);
    return DONE;
  };
  private readonly onError = (error: unknown): never => {
    this.pending = undefined;
    this.finished = true;
    throw error;
  };
  private readonly afterPending = (): Promise<IteratorResult<MessageShape<O>>> => this.next();

  constructor(
    private readonly response: Promise<StreamResponse<I, O>>,
    private readonly options: CallOptions | undefined,
  ) {}

  next(): Promise<IteratorResult<MessageShape<O>>> {
    if (this.pending !== undefined) return this.pending.then(this.afterPending, this.afterPending);
    if (this.finished) return Promise.resolve(DONE);
    const messages = this.messages;
    this.pending = (messages === undefined ? this.first() : messages.next()).then(this.onResult, this.onError);
    return this.pending;
  }

  /** Waits for the response, hands its header to `onHeader`, then reads the first message. */
  private async first(): Promise<IteratorResult<MessageShape<O>>> {
    const response = await this.response;
    this.options?.onHeader?.(response.header);
    this.trailer = response.trailer;
    const messages = response.message[Symbol.asyncIterator]();
    this.messages = messages;
    return messages.next();
  }
}
