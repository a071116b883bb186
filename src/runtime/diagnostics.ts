import { create } from "@bufbuild/protobuf";
import { cloneMessage } from "./message-clone.js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DiagnosticSchema, type Diagnostic, type DiagnosticSeverity } from "../../gen/worker_runtime/v1/runtime_pb.js";
import type { WorkerRef } from "../../gen/worker_runtime/v1/common_pb.js";
import type { DiagnosticsReporter } from "./execution-backend.js";
import { withWellFormedStrings } from "./well-formed-strings.js";

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
 * memory without limit. `add` records one occurrence; `report` and `clear`
 * keep an ongoing problem (a provider that is down) as one entry per code,
 * counted, until it is over.
 */
export class DiagnosticLog implements DiagnosticsReporter {
  private readonly entries: Diagnostic[] = [];
  private nextId = 1;

  constructor(
    private readonly capacity: number,
    private readonly now: () => Date,
  ) {}

  /**
   * Records a diagnostic. Its text is made well formed first: a backend's
   * problem can quote a provider's error, which may hold a lone surrogate,
   * and clone (ListDiagnostics copies every entry) refuses one.
   */
  add(init: DiagnosticInit): Diagnostic {
    const time = timestampFromDate(this.now());
    const diagnostic = create(DiagnosticSchema, {
      ...withWellFormedStrings({ ...init }),
      diagnosticId: `d${this.nextId++}`,
      time,
      count: 1,
      lastSeen: time,
    });
    this.entries.push(diagnostic);
    if (this.entries.length > this.capacity) this.entries.shift();
    return diagnostic;
  }

  /**
   * Records an ongoing problem by code: the first report adds it, later
   * ones count it and refresh its severity, message and last-seen time
   * (its id and first time stay, so pages stay stable).
   */
  report(problem: { severity: DiagnosticSeverity; code: string; message: string }): void {
    const known = this.entries.find((d) => d.code === problem.code && d.worker === undefined);
    if (!known) {
      this.add(problem);
      return;
    }
    known.count++;
    known.severity = problem.severity;
    known.message = withWellFormedStrings({ message: problem.message }).message;
    known.lastSeen = timestampFromDate(this.now());
  }

  /** Removes the runtime-wide diagnostics with these codes. */
  clear(codes: readonly string[]): void {
    for (let i = this.entries.length - 1; i >= 0; i--) {
      const entry = this.entries[i] as Diagnostic;
      if (entry.worker === undefined && codes.includes(entry.code)) this.entries.splice(i, 1);
    }
  }

  /** Diagnostics newest first (copies: `report` updates entries in place). */
  newestFirst(): Diagnostic[] {
    return this.entries.map((d) => cloneMessage(DiagnosticSchema, d)).reverse();
  }

  /** How many are held. */
  get size(): number {
    return this.entries.length;
  }
}
