import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { AllocationSchema, DiagnosticSeveritySchema } from "../../gen/worker_runtime/v1/runtime_pb.js";
import {
  type ListAllocationsRequest,
  type ListAllocationsResponse,
  ListAllocationsResponseSchema,
  type ListDiagnosticsRequest,
  type ListDiagnosticsResponse,
  ListDiagnosticsResponseSchema,
} from "../../gen/worker_runtime/v1/runtime_management_pb.js";
import type { AllocationManager } from "./allocations.js";
import type { DiagnosticLog } from "./diagnostics.js";
import type { Limits } from "./limits.js";
import type { PageTokens } from "./page-token.js";
import { checkEnum, checkId, resolvePageSize } from "./validation.js";

/** Diagnostics, newest first, paginated and filtered by severity and worker. */
export function listDiagnostics(
  diagnostics: DiagnosticLog,
  request: ListDiagnosticsRequest,
  limits: Limits,
  pageTokens: PageTokens,
): ListDiagnosticsResponse {
  const pageSize = resolvePageSize("page_size", request.pageSize, limits.defaultPageSize, limits.maxPageSize);
  checkEnum("min_severity", request.minSeverity, DiagnosticSeveritySchema);
  if (request.workerId !== "") checkId("worker_id", request.workerId);
  const filter = [request.minSeverity, request.workerId];
  const after = pageTokens.decode("page_token", "diagnostics", filter, request.pageToken);
  const matching = diagnostics
    .newestFirst()
    .filter((d) => d.severity >= request.minSeverity && (request.workerId === "" || d.worker?.workerId === request.workerId));
  // Ids are "d<n>", increasing: the page starts at the first one older than the token's.
  const start = typeof after === "string" ? matching.findIndex((d) => Number(d.diagnosticId.slice(1)) < Number(after.slice(1))) : 0;
  const page = start < 0 ? [] : matching.slice(start, start + pageSize);
  const last = page[page.length - 1];
  const more = start >= 0 && start + pageSize < matching.length;
  return create(ListDiagnosticsResponseSchema, {
    diagnostics: page,
    nextPageToken: more && last ? pageTokens.encode("diagnostics", filter, last.diagnosticId) : "",
  });
}

/** Workspace and mount leases in the order they were taken, paginated after the last one shown. */
export function listAllocations(
  allocations: AllocationManager,
  request: ListAllocationsRequest,
  limits: Limits,
  pageTokens: PageTokens,
): ListAllocationsResponse {
  const pageSize = resolvePageSize("page_size", request.pageSize, limits.defaultPageSize, limits.maxPageSize);
  const after = pageTokens.decode("page_token", "allocations", [], request.pageToken);
  // One more than the page, to know whether another follows.
  const held = allocations.listAfter(typeof after === "number" ? after : 0, pageSize + 1);
  const page = held.slice(0, pageSize);
  const last = page[page.length - 1];
  return create(ListAllocationsResponseSchema, {
    allocations: page.map(({ allocation }) => cloneMessage(AllocationSchema, allocation)),
    nextPageToken: held.length > pageSize && last ? pageTokens.encode("allocations", [], last.order) : "",
  });
}
