import { describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { RunIndex } from "../../src/store/fs/run-index.js";
import { decodeRunIndexCheckpoint, runIndexCheckpointFrames } from "../../src/store/fs/run-index-checkpoint.js";

/** A run record's index fields: every third run with a request id. */
function record(n: number, status: RunStatus) {
  return { status, runId: `r${n}`, requestId: n % 3 === 0 ? `req-${n}` : "", fingerprint: n % 3 === 0 ? `fp-${n}` : "" };
}

/** An index of `runs` runs, one record each (seq n for run n), all COMPLETED but run 7 (QUEUED). */
function indexOf(runs: number): RunIndex {
  const index = new RunIndex();
  for (let n = 1; n <= runs; n++) index.apply(record(n, n === 7 ? RunStatus.QUEUED : RunStatus.COMPLETED), n);
  return index;
}

/**
 * The checkpoint is encoded a frame at a time while the run log goes on
 * (run-log.ts), so the index it reads must stay as it was when the
 * checkpoint began: a run whose latest version changes meanwhile keeps its
 * old seq in the checkpoint, and runs added meanwhile are not in it.
 */
describe("RunIndex.freeze", () => {
  it("gives the checkpoint the index as of the freeze, whatever is applied while it is encoded", () => {
    const reference = indexOf(300).freeze(0xabc);
    const expected = Buffer.concat([...runIndexCheckpointFrames(reference, 256)]);

    const index = indexOf(300);
    const frozen = index.freeze(0xabc);
    const frames = runIndexCheckpointFrames(frozen, 256);
    const written = [frames.next().value, frames.next().value, frames.next().value];
    // Between frames: a run encoded already, a run not yet encoded and the queued run change; a new run comes.
    index.apply(record(1, RunStatus.FAILED), 301);
    index.apply(record(299, RunStatus.FAILED), 302);
    index.apply(record(7, RunStatus.COMPLETED), 303);
    index.apply(record(301, RunStatus.RUNNING), 304);
    const bytes = Buffer.concat([...written.filter((frame) => frame !== undefined), ...frames]);
    frozen.release();

    expect(written.every((frame) => frame !== undefined && frame.length <= 256 + 20)).toBe(true);
    expect(bytes.equals(expected), "the checkpoint of a frozen index is what it was at the freeze").toBe(true);
    const decoded = decodeRunIndexCheckpoint(bytes);
    if ("problem" in decoded) throw new Error(decoded.problem);
    expect(decoded.state.lastSeq).toBe(300);
    expect(decoded.state.runIds.length).toBe(300);
    expect(decoded.state.latest[298]).toBe(299);
    expect(decoded.state.unfinished).toEqual([7]);
    expect(RunIndex.fromState(decoded.state)).toBeInstanceOf(RunIndex);
    // The live index moved on.
    expect(index.seqOf(299)).toBe(302);
    expect(index.count).toBe(301);
  });
});
