import { createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import { BusyPolicy } from "../../gen/worker_runtime/v1/common_pb.js";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { WorkerObservation } from "../../gen/worker_runtime/v1/worker_observation_pb.js";

/**
 * The console bench's baseline, bundled into the console's page: a bare
 * connect-web client on the same transport settings as the console that
 * watches a worker, sends one message, and reports when the first text
 * delta arrived (ms after sending) — no rendering at all.
 */
async function firstToken(runtimeId: string, workerId: string, text: string): Promise<number> {
  const transport = createConnectTransport({
    baseUrl: (globalThis as unknown as { location: { origin: string } }).location.origin,
    useBinaryFormat: true,
  });
  const observation = createClient(WorkerObservation, transport);
  const interaction = createClient(WorkerInteraction, transport);
  const worker = { runtimeId, workerId };
  const abort = new AbortController();
  const stream = observation.watchWorker({ worker }, { signal: abort.signal })[Symbol.asyncIterator]();
  await stream.next(); // the snapshot: the watch is open, as the console's is
  const sentAt = performance.now();
  // Not awaited before reading: the console's watch reads while its send is in flight too.
  const sending = interaction.sendInput({ worker, input: { text }, busyPolicy: BusyPolicy.REJECT });
  let firstAt = 0;
  for (;;) {
    const { value, done } = await stream.next();
    if (done) throw new Error("watch ended");
    for (const event of value.events) {
      if (!firstAt && event.kind.case === "textDelta") firstAt = performance.now();
      if (event.kind.case === "runChanged" && event.kind.value.status >= RunStatus.COMPLETED) {
        abort.abort();
        await sending;
        return firstAt - sentAt;
      }
    }
  }
}

(globalThis as unknown as { __bareFirstToken: typeof firstToken }).__bareFirstToken = firstToken;
