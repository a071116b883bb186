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

/**
 * Two map keys can repair to the same text ("k\ud800" and "k\udc00" both
 * become "k\ufffd"), or to a key the map already has. Repairing one used to
 * overwrite the other's value silently. The rule: a key that was well formed
 * keeps its name; a repaired key that would land on a name taken takes the
 * first free "<repaired> (n)", n = 2, 3..., in the map's own order, so no
 * value is lost and the same map always repairs the same way.
 */
describe("withWellFormedStrings on map keys that repair to the same text", () => {
  it("keeps every value, under a deterministic name", () => {
    const message = {
      $typeName: "x.M",
      metadata: { "k\ud800": "first", "k\udc00": "second", "k\ufffd (2)": "taken", "k\ufffd": "plain", other: "o" },
    };
    withWellFormedStrings(message);
    expect(message.metadata).toEqual({
      "k\ufffd": "plain",
      "k\ufffd (2)": "taken",
      "k\ufffd (3)": "first",
      "k\ufffd (4)": "second",
      other: "o",
    });
    expect(Object.values(message.metadata).sort()).toEqual(["first", "o", "plain", "second", "taken"]);
  });

  it("names the collisions the same way every time", () => {
    const make = () => ({ $typeName: "x.M", metadata: { "a\ud800": "1", "a\udbff": "2", "a\udfff": "3" } });
    const once = withWellFormedStrings(make());
    expect(once.metadata).toEqual({ "a\ufffd": "1", "a\ufffd (2)": "2", "a\ufffd (3)": "3" });
    expect(withWellFormedStrings(make())).toEqual(once);
  });
});
