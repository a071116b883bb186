/**
 * Child process of run-checkpoint-kill.test.ts: writes runs to worker w1 of a
 * file store (small segments) until it SIGKILLs itself in the middle of its
 * second run index checkpoint, either once the temp file is written (before
 * its fsync and rename) or once it was renamed (before the fsync of the
 * directory). Prints `acked <n>` after each batch of runs is durable.
 */
import { existsSync } from "node:fs";
import * as path from "node:path";
import { RUN_CHECKPOINT_FILE } from "../../src/store/fs/run-log.js";
import { openStore, run, workerRecord } from "./fs-support.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";

const [dataDir, phase] = process.argv.slice(2);
if (!dataDir || (phase !== "before-rename" && phase !== "after-rename")) {
  throw new Error("usage: run-checkpoint-kill-child.ts DATA_DIR before-rename|after-rename");
}

const runsDir = "workers/w1/runs";
let checkpointTemps = 0;
let lastTemp = "";
const { store } = await openStore(dataDir, {
  segmentBytes: 16 * 1024,
  faults: {
    beforeSync(file) {
      if (file.startsWith(`${runsDir}/${RUN_CHECKPOINT_FILE}.tmp-`)) {
        checkpointTemps++;
        lastTemp = file;
        if (checkpointTemps === 2 && phase === "before-rename") process.kill(process.pid, "SIGKILL");
      } else if (file === runsDir && checkpointTemps === 2 && phase === "after-rename" && !existsSync(path.join(dataDir, lastTemp))) {
        // The directory's fsync after the rename (a segment roll's fsync of the same dir can come first: also after the rename).
        process.kill(process.pid, "SIGKILL");
      }
    },
  },
});
await store.putWorker(workerRecord("w1"));
// Bounded, so that a checkpoint that never comes fails the test instead of running for ever.
for (let n = 1; n <= 10_000; n += 20) {
  const numbers = Array.from({ length: 20 }, (_, i) => n + i);
  const put = (status: RunStatus) =>
    Promise.all(numbers.map((k) => store.putRun("w1", run(`r${k}`, status, `req-${k}`, `input ${k}`), { fingerprint: `fp-${k}` })));
  await put(RunStatus.QUEUED);
  await put(RunStatus.COMPLETED);
  process.stdout.write(`acked ${n + 19}\n`);
}
process.stderr.write("no second checkpoint was written\n");
process.exit(1);
