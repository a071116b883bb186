import { Code } from "@connectrpc/connect";
import { ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { RuntimeError } from "./errors.js";
import { RESPONSE_RESERVE_BYTES, type Limits } from "./limits.js";
import { varintSize } from "./varint.js";

/**
 * Every response must fit the server's message limit (`maxMessageBytes`,
 * its writeMaxBytes): a response over it is never delivered, and a client
 * retrying the same read would fail for ever. So lists, transcript reads
 * and stream batches are cut by bytes as well as by count. Sizes are those
 * of the protobuf binary encoding.
 */

/** Bytes the items of one response may take together. */
export function responseBudgetBytes(limits: Pick<Limits, "maxMessageBytes">): number {
  return limits.maxMessageBytes - RESPONSE_RESERVE_BYTES;
}

/** Bytes one element of a repeated message field takes: tag, length varint, body. */
export function repeatedFieldBytes(bodyBytes: number): number {
  return 1 + varintSize(bodyBytes) + bodyBytes;
}

/** Most bytes a repeated field adds to an element's body: its tag and a length varint of up to 5 bytes. */
const MAX_FIELD_FRAME_BYTES = 6;

/**
 * Whether `count` elements of a repeated field whose bodies take
 * `bodyBytes` together surely fit `budgetBytes`, counted at their largest
 * frame: a check without walking them, for a batch that usually fits whole.
 * False says only that they must be counted one by one ({@link ResponseBudget}).
 */
export function surelyFits(count: number, bodyBytes: number, budgetBytes: number): boolean {
  return bodyBytes + MAX_FIELD_FRAME_BYTES * count <= budgetBytes;
}

/**
 * A running total against a response's byte budget. The first item is
 * always taken so every page makes progress; the runtime's limits make
 * sure any single item it accepts fits (see limits.ts), and one that does
 * not is refused with a typed error rather than left to the transport.
 */
export class ResponseBudget {
  private used = 0;
  private count = 0;

  constructor(private readonly budgetBytes: number) {}

  /** Takes an item of `bodyBytes` if it fits; false means the response is full. */
  take(bodyBytes: number): boolean {
    const bytes = repeatedFieldBytes(bodyBytes);
    if (this.count > 0 && this.used + bytes > this.budgetBytes) return false;
    if (bytes > this.budgetBytes) throw tooLargeToSend(bytes, this.budgetBytes);
    this.used += bytes;
    this.count++;
    return true;
  }
}

/**
 * Splits items into consecutive runs whose encoded sizes fit the budget,
 * keeping their order; every run holds at least one item.
 */
export function splitByBytes<T>(items: readonly T[], sizeOf: (item: T) => number, budgetBytes: number): T[][] {
  const parts: T[][] = [];
  let part: T[] = [];
  let budget = new ResponseBudget(budgetBytes);
  for (const item of items) {
    if (!budget.take(sizeOf(item))) {
      parts.push(part);
      part = [];
      budget = new ResponseBudget(budgetBytes);
      budget.take(sizeOf(item));
    }
    part.push(item);
  }
  if (part.length > 0) parts.push(part);
  return parts;
}

/**
 * RESOURCE_EXHAUSTED for one item that cannot fit any response (the limits
 * do not add up); metadata "limit" is the message limit clients know
 * (max_message_bytes).
 */
function tooLargeToSend(bytes: number, budgetBytes: number): RuntimeError {
  const messageLimit = budgetBytes + RESPONSE_RESERVE_BYTES;
  return new RuntimeError(
    Code.ResourceExhausted,
    ErrorReason.LIMIT_EXCEEDED,
    `a message of ${bytes} bytes would exceed the message limit of ${messageLimit} bytes`,
    { limit: String(messageLimit) },
  );
}
