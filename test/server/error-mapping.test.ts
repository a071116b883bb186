import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import { ErrorDetailSchema, ErrorReason } from "../../gen/worker_runtime/v1/errors_pb.js";
import { silentLogger } from "../../src/runtime/index.js";
import { toConnectError } from "../../src/server/error-mapping.js";

describe("toConnectError", () => {
  it.each([
    ["message size 4350652 is larger than configured writeMaxBytes 4194304", "4194304"],
    ["message size is larger than configured readMaxBytes 65536", "65536"],
    ["message size 70000 is larger than configured readMaxBytes 65536", "65536"],
  ])('puts the transport\'s size limit in metadata "limit": %s', (message, limit) => {
    const mapped = toConnectError(new ConnectError(message, Code.ResourceExhausted), silentLogger);
    const detail = mapped.findDetails(ErrorDetailSchema)[0];
    expect(mapped.code).toBe(Code.ResourceExhausted);
    expect(detail?.reason).toBe(ErrorReason.LIMIT_EXCEEDED);
    expect(detail?.metadata).toEqual({ limit });
  });
});
