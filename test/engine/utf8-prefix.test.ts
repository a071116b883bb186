import { describe, expect, it } from "vitest";
import { utf8BytePrefix } from "../../src/engine/utf8-prefix.js";

/** A deterministic byte source, so a failure repeats. */
function* randomBytes(seed: number): Generator<number> {
  let state = seed;
  for (;;) {
    state = (state * 1103515245 + 12345) % 2 ** 31;
    yield state >>> 8;
  }
}

describe("utf8BytePrefix", () => {
  it("cuts valid UTF-8 only between characters, keeping the text within the bound", () => {
    const text = "aé€😀".repeat(20);
    const bytes = Buffer.from(text);
    for (let max = 1; max <= 40; max++) {
      for (let length = 1; length <= 40; length++) {
        const shown = Buffer.from(bytes.subarray(0, length)).subarray(0, utf8BytePrefix(bytes.subarray(0, length), max, false));
        const decoded = shown.toString("utf8");
        expect(text.startsWith(decoded), `max ${max}, length ${length}: ${decoded}`).toBe(true);
        expect(decoded).not.toContain("\uFFFD");
        // At least one whole character is always taken, even over a bound smaller than it.
        expect(Buffer.byteLength(decoded) <= max || Array.from(decoded).length === 1).toBe(true);
      }
    }
  });

  it("keeps any bytes' decoded text within the bound, counting an invalid byte as U+FFFD", () => {
    const source = randomBytes(7);
    for (let round = 0; round < 2000; round++) {
      const length = 1 + ((source.next().value as number) % 24);
      // Mostly bytes from 0x80 up, where the invalid and the multi-byte ones lie.
      const bytes = Buffer.from(Array.from({ length }, () => 0x60 + ((source.next().value as number) % 0xa0)));
      // From 4: one character, taken whatever the bound, may be 4 bytes.
      const max = 4 + (round % 30);
      for (const complete of [false, true]) {
        const shown = utf8BytePrefix(bytes, max, complete);
        expect(shown).toBeGreaterThan(0);
        expect(Buffer.byteLength(bytes.subarray(0, shown).toString("utf8")), bytes.toString("hex")).toBeLessThanOrEqual(max);
      }
    }
  });
});
