import { create } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";
import { WorkerRefSchema } from "../../gen/worker_runtime/v1/common_pb.js";
import { AllocationMode } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { ListAllocationsRequestSchema } from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import { AllocationManager } from "../../src/runtime/allocations.js";
import { DEFAULT_LIMITS } from "../../src/runtime/limits.js";
import { listAllocations } from "../../src/runtime/management-queries.js";
import { PageTokens } from "../../src/runtime/page-token.js";

/**
 * ListAllocations pages resume after the last lease shown, not at a list
 * position: a lease released (its worker stopped) between two pages must
 * not shift a lease that was never shown out of the listing.
 */
describe("ListAllocations pages", () => {
  const tokens = new PageTokens("rt\0store");
  const lease = (workerId: string) => ({
    holder: create(WorkerRefSchema, { runtimeId: "rt", workerId }),
    lease: { root: "work", path: workerId, mode: AllocationMode.WRITE, mountName: "", hostPath: `/host/work/${workerId}` },
  });
  const page = (allocations: AllocationManager, pageToken = "") =>
    listAllocations(allocations, create(ListAllocationsRequestSchema, { pageSize: 1, pageToken }), DEFAULT_LIMITS, tokens);
  const holders = (response: ReturnType<typeof page>) => response.allocations.map((a) => a.holder?.workerId);

  it("shows every lease still held once, whatever was released between pages", () => {
    const allocations = new AllocationManager();
    for (const id of ["w1", "w2", "w3"]) {
      const { holder, lease: wanted } = lease(id);
      allocations.acquire(holder, wanted, new Date());
    }
    const first = page(allocations);
    expect(holders(first)).toEqual(["w1"]);
    allocations.release("w1");
    const second = page(allocations, first.nextPageToken);
    expect(holders(second)).toEqual(["w2"]);
    // A lease taken after the listing began comes at its end.
    const { holder, lease: later } = lease("w4");
    allocations.acquire(holder, later, new Date());
    allocations.release("w2");
    const third = page(allocations, second.nextPageToken);
    expect(holders(third)).toEqual(["w3"]);
    const fourth = page(allocations, third.nextPageToken);
    expect(holders(fourth)).toEqual(["w4"]);
    expect(fourth.nextPageToken).toBe("");
  });
});
