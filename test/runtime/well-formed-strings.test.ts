import { describe, expect, it } from "vitest";
import { withWellFormedStrings } from "../../src/runtime/well-formed-strings.js";

/** The repair the core applies to what a backend hands in (see test/server/lone-surrogates.test.ts for runs). */
describe("withWellFormedStrings", () => {
  it("replaces each lone surrogate by U+FFFD in fields, nested messages, lists, map keys and values, in place", () => {
    const bytes = Uint8Array.of(0xed, 0xa0, 0x80);
    const message = {
      $typeName: "x.M",
      text: "a\ud800b",
      pair: "😀",
      nested: { $typeName: "x.N", list: ["\udc00", "ok", "x\ud83d"], bytes },
      metadata: { "k\ud800": "v\udfff", plain: "p" },
      choice: { case: "value", value: "\ud800\ud800" },
    };
    expect(withWellFormedStrings(message)).toBe(message);
    expect(message).toEqual({
      $typeName: "x.M",
      text: "a\ufffdb",
      pair: "😀",
      nested: { $typeName: "x.N", list: ["\ufffd", "ok", "x\ufffd"], bytes },
      metadata: { "k\ufffd": "v\ufffd", plain: "p" },
      choice: { case: "value", value: "\ufffd\ufffd" },
    });
    expect(message.nested.bytes).toBe(bytes);
    expect([...message.nested.bytes]).toEqual([0xed, 0xa0, 0x80]);
  });
});
