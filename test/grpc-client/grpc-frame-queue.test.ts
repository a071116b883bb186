import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { GrpcFrameQueue } from "../../src/grpc-client/grpc-frame-queue.js";

/** A gRPC frame: flags, big-endian length, message. */
function frame(flags: number, message: Uint8Array): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out[0] = flags;
  out.writeUInt32BE(message.length, 1);
  out.set(message, 5);
  return out;
}

/** A deterministic pseudo-random sequence, so a failure reproduces. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    return state / 2 ** 31;
  };
}

describe("GrpcFrameQueue", () => {
  it("splits frames however the body is cut into chunks (inside headers, inside messages, several frames per chunk)", () => {
    for (let seed = 1; seed <= 200; seed++) {
      const next = random(seed);
      const messages = Array.from({ length: 1 + Math.floor(next() * 12) }, (_, i) =>
        Uint8Array.from({ length: Math.floor(next() * 3) === 0 ? 0 : Math.floor(next() * 300) }, (_, j) => (i * 31 + j) % 256),
      );
      const flags = messages.map(() => (next() < 0.3 ? 1 : 0));
      const body = Buffer.concat(messages.map((m, i) => frame(flags[i] as number, m)));
      const queue = new GrpcFrameQueue(1024);
      const taken: Array<{ flags: number; data: number[]; plain: boolean }> = [];
      for (let offset = 0; offset < body.length; ) {
        const size = 1 + Math.floor(next() * (next() < 0.5 ? 8 : 400));
        queue.push(body.subarray(offset, offset + size));
        offset += size;
        for (let data = queue.take(); data !== undefined; data = queue.take()) {
          taken.push({ flags: queue.flags, data: [...data], plain: data.constructor === Uint8Array });
        }
      }
      expect(taken).toEqual(messages.map((m, i) => ({ flags: flags[i], data: [...m], plain: true })));
      expect(queue.bytes).toBe(0);
    }
  });

  it("refuses a frame over readMaxBytes as soon as its header is read, with connect's words", () => {
    const queue = new GrpcFrameQueue(10);
    queue.push(frame(0, new Uint8Array(11)).subarray(0, 5));
    let error: unknown;
    try {
      queue.take();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConnectError);
    expect((error as ConnectError).code).toBe(Code.ResourceExhausted);
    expect((error as ConnectError).rawMessage).toBe("message size 11 is larger than configured readMaxBytes 10");
  });
});
