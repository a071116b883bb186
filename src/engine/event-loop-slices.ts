import { performance } from "node:perf_hooks";
import { setImmediate as nextTurn } from "node:timers/promises";

/**
 * Bounds how long a run's stream processing holds the event loop. A
 * provider burst already buffered in the response body is read without
 * ever leaving the microtask queue, so a long burst would hold the loop
 * until it is all processed, and every RPC and every other run would wait
 * behind it. Work is counted in slices of at most `maxItems` items or
 * `maxMs` milliseconds; when a slice is used up, {@link EventLoopSlices.pause}
 * gives the loop one full turn (timers, I/O, other runs' slices) before
 * going on. A slice starts afresh whenever the loop has turned anyway (a
 * paced stream waits for every read), so a slow stream never pauses.
 */
export class EventLoopSlices {
  private turned = true;
  /** Whether a check for the loop's next turn is scheduled (only once a slice holds a few items). */
  private watching = false;
  private items = 0;
  private startedAt = 0;

  /**
   * `maxItems` must be well above {@link WATCH_AFTER_ITEMS}, or a paced stream could reach it unwatched.
   * `turnMaxMs` bounds the slices of every stream together within one turn of the loop (see {@link turnElapsedMs}).
   */
  constructor(
    private readonly maxItems: number,
    private readonly maxMs: number,
    private readonly turnMaxMs = Number.POSITIVE_INFINITY,
  ) {}

  /** Counts one item; true when the slice is used up and the caller should {@link pause}. */
  spend(): boolean {
    if (this.turned) {
      this.turned = false;
      this.watching = false;
      this.items = 0;
    }
    this.items++;
    if (!this.watching) {
      // A paced stream brings an item or two per turn: it is not watched (and pays for no
      // setImmediate) until a slice holds a few items, and the clock starts then.
      if (this.items < WATCH_AFTER_ITEMS) return false;
      this.watching = true;
      this.startedAt = performance.now();
      setImmediate(() => {
        this.turned = true;
      });
    }
    if (this.items >= this.maxItems) return true;
    if (this.items % 16 !== 0) return false;
    return (
      performance.now() - this.startedAt >= this.maxMs || (this.turnMaxMs !== Number.POSITIVE_INFINITY && turnElapsedMs() >= this.turnMaxMs)
    );
  }

  /** Lets the event loop turn once or twice (see {@link nextTurnForSlices}); the next item starts a new slice. */
  async pause(): Promise<void> {
    await nextTurnForSlices();
    this.turned = true;
  }
}

/**
 * Resolves in the loop's next timers phase, ahead of that turn's I/O, or in
 * the check phase after next, whichever comes first.
 *
 * Not simply the next check phase (`setImmediate`): the check phase is where
 * Node's HTTP/2 sessions flush what RPC handlers wrote, and where a gRPC
 * response's trailers are submitted, from a `setImmediate` queued during that
 * flush. Slices paused before it went first, so under concurrent floods
 * every RPC's end waited behind up to a turn budget of flood work. Under
 * load the timers phase usually comes first (a turn of the loop then takes
 * more than the timer's millisecond); when the second check phase does, the
 * slice runs ahead of what that phase's flush queues, as before, a turn later.
 *
 * Not only the timers phase: a timer waits for the loop's millisecond clock
 * to tick, and with no other I/O the loop slept that long between a lone
 * flood's slices (half its throughput). The second check phase comes first
 * then, two quick turns later.
 */
export function nextTurnForSlices(): Promise<void> {
  return new Promise((resolve) => {
    let resumed = false;
    const timer = setTimeout(() => {
      resumed = true;
      resolve();
    }, 0);
    setImmediate(() =>
      setImmediate(() => {
        if (resumed) return;
        clearTimeout(timer);
        resolve();
      }),
    );
  });
}

/**
 * One clock for the slices of every stream: when ten floods each take a
 * 1 ms slice in the same turn of the loop, the loop is held for 10 ms and
 * more, and RPCs and timers wait that long. The clock starts at the first
 * check in a stretch of the loop and is reset by a `setImmediate`, so each
 * stretch between two turns gets one budget, shared by whichever streams
 * run in it; a stream that finds it spent pauses (going to the back of the
 * queue), so the streams take turns.
 */
const turn = { open: false, startedAt: 0 };

function turnElapsedMs(): number {
  const now = performance.now();
  if (!turn.open) {
    turn.open = true;
    turn.startedAt = now;
    setImmediate(() => {
      turn.open = false;
    });
  }
  return now - turn.startedAt;
}

/** Items a slice takes before it is watched at all. */
const WATCH_AFTER_ITEMS = 16;

/** Chunks per slice: a few hundred small chunks take well under a millisecond each slice. */
export const SLICE_MAX_CHUNKS = 256;
/** Milliseconds per slice, so ten concurrent floods still leave the loop turning every few ms. */
export const SLICE_MAX_MS = 1;
/** Milliseconds the slices of all streams may take together between two turns of the loop. */
export const TURN_MAX_MS = 4;

/**
 * Waits, if the shared budget of this stretch of the loop is spent (see
 * {@link turnElapsedMs}), until a turn where it is not. Run starts use it:
 * SendInputs that arrive together (one read of an HTTP/2 session) each
 * build and send a provider request, about a millisecond apiece, and ten
 * of them held the loop for 10–20 ms; past the budget the rest go on in
 * the next turns, as the floods' slices do. Resolves at once (no promise
 * when the budget is left) otherwise.
 */
export function turnBudget(maxMs = TURN_MAX_MS): Promise<void> | undefined {
  if (turnElapsedMs() < maxMs) return undefined;
  return waitForBudget(maxMs);
}

/**
 * Waits for the next check phase, not {@link nextTurnForSlices}'s turn: a run
 * start is one slice-sized piece of work, not a stream of them, and with that
 * wait SendInput under the ten floods was no faster (four alternated runs).
 */
async function waitForBudget(maxMs: number): Promise<void> {
  do await nextTurn();
  while (turnElapsedMs() >= maxMs);
}
