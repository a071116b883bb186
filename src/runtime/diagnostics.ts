import { create } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DiagnosticSchema, type Diagnostic, type DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";

/** What a diagnostic says, before it gets an id and a time. */
export interface DiagnosticInit {
  severity: DiagnosticSeverity;
  code: string;
  message: string;
  worker?: WorkerRef;
}

/**
 * A bounded log of things an operator should know about. The oldest
 * entries are dropped past the bound, so a flapping problem cannot grow
 * memory without limit.
 */
export class DiagnosticLog {
  private readonly entries: Diagnostic[] = [];
  private nextId = 1;

  constructor(
    private readonly capacity: number,
    private readonly now: () => Date,
  ) {}

  /** Records a diagnostic. */
  add(init: DiagnosticInit): Diagnostic {
    const diagnostic = create(DiagnosticSchema, {
      ...init,
      diagnosticId: `d${this.nextId++}`,
      time: timestampFromDate(this.now()),
    });
    this.entries.push(diagnostic);
    if (this.entries.length > this.capacity) this.entries.shift();
    return diagnostic;
  }

  /** Diagnostics newest first. */
  newestFirst(): Diagnostic[] {
    return [...this.entries].reverse();
  }

  /** How many are held. */
  get size(): number {
    return this.entries.length;
  }
}
