import { Code, ConnectError, type ContextValues, type Transport } from "@connectrpc/connect";
import { HealthCheckResponse_ServingStatus as ServingStatus } from "../../gen/grpc/health/v1/health_pb.js";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import type { Runtime as RuntimeSummary } from "../../gen/worker_runtime/v1/runtime_pb.js";
import { bounded, type Logger } from "../runtime/index.js";
import { ConnectionBackoff, type ConnectionBackoffOptions } from "./backoff.js";
import { createRuntimeClients, type RuntimeClients } from "./runtime-clients.js";
import { UnreachableReasons } from "./unreachable-message.js";
import { healthAfter } from "./upstream-errors.js";

/**
 * Where and how a connection reaches its Runtime. Replaced whole when the
 * Runtime is re-pointed ({@link RuntimeConnection.repoint}).
 */
export interface RuntimeRoute {
  /** Scheme, host and port (remote), "" (embedded). */
  endpoint: string;
  /** The transport to it (in-process router for the embedded Runtime). */
  transport: Transport;
  /** Whether a bearer token is configured. */
  hasCredentials: boolean;
  /** Called before each connection attempt (re-reads the token). */
  beforeAttempt?: () => void;
  /** Closes the transport's connection. */
  closeTransport?: () => void;
  /** What the route was made from (remote-transport.ts routeKeyOf); "" when not compared. */
  key?: string;
}

/** Options for {@link RuntimeConnection}. */
export interface RuntimeConnectionInit extends RuntimeRoute {
  /** The id the Runtime must report; the routing key. */
  runtimeId: string;
  /** Whether it is the Backend's embedded Runtime. */
  embedded: boolean;
  /** Deadline of the GetRuntime call that opens each attempt. */
  connectTimeoutMs: number;
  backoff?: ConnectionBackoffOptions;
  logger: Logger;
}

/** What the registry shows about a connection. */
export interface ConnectionState {
  health: RuntimeHealth;
  healthMessage: string;
  healthChangedAt: Date;
  failedAttempts: number;
  nextAttemptAt: Date | undefined;
  summary: RuntimeSummary | undefined;
  summaryTime: Date | undefined;
}

/** Least time between attempts that routed calls ask for (see RuntimeConnection.demandAttempt). */
export const DEMANDED_ATTEMPT_SPACING_MS = 1_000;

/** Thrown to waiters when the Runtime is removed from the registry. */
export class RuntimeRemovedError extends Error {
  override readonly name = "RuntimeRemovedError";
}

/**
 * One Runtime as the Backend sees it: its generated clients and its health.
 * Health is driven by a loop of connection attempts: each opens with an
 * authenticated GetRuntime (the health service is open, so only an
 * authenticated call can tell a wrong token), checks the Runtime's id, then
 * follows grpc.health.v1 Watch until the stream ends. A failed attempt, an
 * ended watch or a routed call that failed at the transport level waits for
 * the gRPC connection backoff before the next attempt; a success resets it.
 * Each Runtime has its own loop and connection, so nothing about one slows
 * another.
 */
export class RuntimeConnection {
  readonly runtimeId: string;
  readonly embedded: boolean;
  // The route's parts, read at each call; only repoint() replaces them.
  endpoint: string;
  hasCredentials: boolean;
  clients: RuntimeClients;
  /** The transport under the clients (for calls that skip decoding, see raw-worker-page.ts). */
  transport: Transport;
  /** The route's key ({@link RuntimeRoute.key}). */
  routeKey: string;
  /**
   * Which route the parts above are: one more at each repoint(). An attempt,
   * a call or a summary fetch is tied to the generation it started on, and
   * what it ends with after a re-point is dropped (see {@link reportFailure}).
   */
  routeGeneration = 0;
  private init: RuntimeConnectionInit;
  private readonly backoff: ConnectionBackoff;
  private readonly closed = new AbortController();
  private shutdown = false;
  private draining = false;
  private attempt: AbortController | undefined;
  private failure: ConnectError | undefined;
  private wakeSleep: (() => void) | undefined;
  /** When the current or last attempt started (performance.now()): what a demanded attempt is spaced from. */
  private attemptStartedAt = Number.NEGATIVE_INFINITY;
  /** A demanded attempt waiting for the spacing from the last one to pass. */
  private demandedWake: NodeJS.Timeout | undefined;
  private readonly listeners = new Set<() => void>();
  private readonly reasons = new UnreachableReasons();
  private state: ConnectionState = {
    health: RuntimeHealth.CONNECTING,
    healthMessage: "connecting",
    healthChangedAt: new Date(),
    failedAttempts: 0,
    nextAttemptAt: undefined,
    summary: undefined,
    summaryTime: undefined,
  };

  constructor(init: RuntimeConnectionInit) {
    this.init = init;
    this.runtimeId = init.runtimeId;
    this.embedded = init.embedded;
    this.endpoint = init.endpoint;
    this.hasCredentials = init.hasCredentials;
    this.transport = init.transport;
    this.routeKey = init.key ?? "";
    this.clients = createRuntimeClients(init.transport);
    this.backoff = new ConnectionBackoff(init.backoff);
  }

  /** Starts the connection loop (runs until {@link close}). */
  start(): void {
    void this.loop();
  }

  /** A copy of the current state. */
  get snapshot(): ConnectionState {
    return { ...this.state };
  }

  get health(): RuntimeHealth {
    return this.state.health;
  }

  /**
   * Whether routed calls go to it: READY, or draining — connected, its
   * health NOT_SERVING. A draining Runtime shows UNAVAILABLE (nothing new is
   * placed on it) yet still serves the runs it is finishing for its grace
   * period: reads, watches, cancels and approvals reach it, and it refuses
   * new input itself with RUNTIME_DRAINING.
   */
  get routable(): boolean {
    return this.state.health === RuntimeHealth.READY || this.draining;
  }

  get isClosed(): boolean {
    return this.closed.signal.aborted;
  }

  /**
   * Closed because the Backend shuts down rather than because the Runtime
   * was removed: the watches relayed through it end cleanly (as the
   * embedded Runtime's own do when it closes), not with NOT_FOUND, which
   * tells a client the Runtime is gone for good.
   */
  get closedForShutdown(): boolean {
    return this.isClosed && this.shutdown;
  }

  /** Stops the loop, closes the connection and ends every waiter with RuntimeRemovedError; `shutdown`: see {@link closedForShutdown}. */
  close(shutdown = false): void {
    if (this.closed.signal.aborted) return;
    this.shutdown = shutdown;
    this.closed.abort();
    this.attempt?.abort();
    this.wakeSleep?.();
    this.init.closeTransport?.();
    this.notify();
  }

  /**
   * A routed call failed: if the failure says the Runtime is unreachable or
   * refused our token, the current attempt ends now (health changes at once)
   * instead of when the health watch notices. `generation` is the route
   * the call started on ({@link routeGeneration}): a call that started
   * before a re-point and fails after it says nothing about the new route
   * (its transport was closed, or the old runtime failed), so it is dropped.
   */
  reportFailure(error: ConnectError, generation: number): void {
    if (generation !== this.routeGeneration) return;
    const health = healthAfter(error);
    if (health === undefined || this.state.health !== RuntimeHealth.READY) return;
    this.failure = error;
    this.attempt?.abort();
  }

  /**
   * Someone asked for this Runtime while it is away (a routed call or watch,
   * refused at once with RUNTIME_*): if the loop is waiting out its backoff,
   * the next attempt starts now, so a Runtime that came back is used again
   * within a second of the first call after, not when a backoff grown over a
   * long outage (up to its cap) ends. At most one attempt per
   * {@link DEMANDED_ATTEMPT_SPACING_MS} however many calls ask, so a busy
   * Backend does not hammer an address that refuses.
   */
  demandAttempt(): void {
    if (this.isClosed || this.wakeSleep === undefined || this.demandedWake !== undefined) return;
    const early = DEMANDED_ATTEMPT_SPACING_MS - (performance.now() - this.attemptStartedAt);
    if (early <= 0) this.wakeSleep();
    // Asked too soon after the last attempt: the attempt comes once the spacing has passed, not never.
    else this.demandedWake = setTimeout(() => this.wakeSleep?.(), early);
  }

  /**
   * Points the connection at another address or credentials (UpdateRuntime,
   * a discovered Runtime's new port): an attempt through the new route
   * starts now, with the backoff reset, and the old route's connection is
   * closed, ending the calls in flight on it as an outage would. Watches
   * relayed through this connection wait for READY (health is CONNECTING
   * meanwhile) and resume from their cursors through the new route.
   */
  repoint(route: RuntimeRoute): void {
    if (this.isClosed) return;
    const old = this.init;
    this.init = { ...this.init, ...route };
    this.endpoint = route.endpoint;
    this.hasCredentials = route.hasCredentials;
    this.transport = route.transport;
    this.routeKey = route.key ?? "";
    this.clients = createRuntimeClients(route.transport);
    this.routeGeneration++;
    this.draining = false;
    this.backoff.reset();
    // The attempt starts now, not when the backoff the old address earned would have ended.
    this.setState({ failedAttempts: 0, nextAttemptAt: undefined });
    this.setHealth(RuntimeHealth.CONNECTING, "connecting to the runtime's new address");
    this.attempt?.abort();
    this.wakeSleep?.();
    old.closeTransport?.();
  }

  /**
   * Fetches the Runtime's summary afresh (when READY) within `timeoutMs`;
   * on failure the last one stays and a transport failure counts against
   * health like any routed call. An answer from a route re-pointed
   * meanwhile is dropped: it is not the new route's. `contextValues` are
   * those of the call being served, whose trace and request id the fetch
   * belongs to.
   */
  async refreshSummary(timeoutMs: number, signal: AbortSignal, contextValues?: ContextValues): Promise<void> {
    if (this.state.health !== RuntimeHealth.READY) return;
    const generation = this.routeGeneration;
    try {
      const { runtime } = await this.clients.management.getRuntime({}, { signal, timeoutMs, ...(contextValues ? { contextValues } : {}) });
      if (runtime?.runtimeId === this.runtimeId && generation === this.routeGeneration)
        this.setState({ summary: runtime, summaryTime: new Date() });
    } catch (error) {
      if (!signal.aborted) this.reportFailure(ConnectError.from(error), generation);
    }
  }

  /** Calls `listener` on every state change; returns the unsubscribe. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private async loop(): Promise<void> {
    while (!this.isClosed) {
      const generation = this.routeGeneration;
      this.init.beforeAttempt?.();
      const attempt = new AbortController();
      this.attempt = attempt;
      this.attemptStartedAt = performance.now();
      this.failure = undefined;
      try {
        await this.connectOnce(attempt.signal, generation);
      } catch (error) {
        if (this.isClosed) return;
        // Ended by repoint(): no failure of the new route, whose attempt starts at once.
        if (generation !== this.routeGeneration) continue;
        this.recordFailure(this.failure ?? ConnectError.from(error));
      }
      if (this.isClosed) return;
      const delay = this.backoff.next();
      this.setState({ nextAttemptAt: new Date(Date.now() + delay) });
      await this.sleep(delay);
      this.setState({ nextAttemptAt: undefined });
    }
  }

  /**
   * One attempt on route `generation`: authenticated GetRuntime, id check,
   * then the health watch until it ends (always throws). Nothing it hears
   * after a re-point is recorded (repoint() aborts it; the checks cover an
   * answer already on its way).
   */
  private async connectOnce(signal: AbortSignal, generation: number): Promise<never> {
    const clients = this.clients;
    const stale = (): boolean => generation !== this.routeGeneration;
    const { runtime } = await clients.management.getRuntime({}, { signal, timeoutMs: this.init.connectTimeoutMs });
    if (stale()) throw new ConnectError("the runtime was re-pointed", Code.Canceled);
    if (runtime?.runtimeId !== this.runtimeId) {
      this.init.logger.warn("runtime reports another id", { runtime_id: this.runtimeId, reported: bounded(runtime?.runtimeId ?? "", 128) });
      throw new ConnectError("runtime reports another runtime id", Code.Unimplemented);
    }
    this.backoff.reset();
    this.setState({ summary: runtime, summaryTime: new Date(), failedAttempts: 0 });
    this.setHealth(RuntimeHealth.READY, "");
    for await (const message of clients.health.watch({ service: "" }, { signal })) {
      if (stale()) break;
      this.draining = message.status !== ServingStatus.SERVING;
      if (this.draining) this.setHealth(RuntimeHealth.UNAVAILABLE, "the runtime is not serving (draining)");
      else this.setHealth(RuntimeHealth.READY, "");
    }
    throw new ConnectError("health watch ended", Code.Unavailable);
  }

  private recordFailure(error: ConnectError): void {
    this.draining = false;
    const health = healthAfter(error) ?? RuntimeHealth.UNAVAILABLE;
    const message =
      health === RuntimeHealth.UNAUTHENTICATED
        ? "the runtime refused the backend's credentials"
        : health === RuntimeHealth.INCOMPATIBLE
          ? "the runtime reports another runtime id or lacks a service"
          : error.code === Code.DeadlineExceeded
            ? "the runtime did not answer in time"
            : this.reasons.message(error, this.endpoint, (later) => {
                // A TLS check's verdict, if the connection is still open and where this failure left it.
                if (!this.isClosed && this.state.health === health && this.state.healthMessage === message) this.setHealth(health, later);
              });
    this.init.logger.warn("runtime connection failed", {
      runtime_id: this.runtimeId,
      health: RuntimeHealth[health],
      code: Code[error.code],
      cause: bounded(error.message),
    });
    this.setState({ failedAttempts: this.state.failedAttempts + 1 });
    this.setHealth(health, message);
  }

  private setHealth(health: RuntimeHealth, message: string): void {
    if (this.state.health === health && this.state.healthMessage === message) return;
    if (this.state.health !== health) {
      this.init.logger.info("runtime health", { runtime_id: this.runtimeId, health: RuntimeHealth[health] });
    }
    this.setState({ health, healthMessage: message, healthChangedAt: new Date() });
  }

  private setState(change: Partial<ConnectionState>): void {
    this.state = { ...this.state, ...change };
    this.notify();
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }

  /** Waits `ms`, or until woken (close, a demanded attempt); {@link wakeSleep} is set only while waiting. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        clearTimeout(this.demandedWake);
        this.demandedWake = undefined;
        this.wakeSleep = undefined;
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.wakeSleep = done;
    });
  }
}

/** Resolves once `connection` is READY; rejects with RuntimeRemovedError if it is removed, or on `signal`. */
export function waitUntilReady(connection: RuntimeConnection, signal: AbortSignal): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const check = (): void => {
      if (connection.isClosed) finish(new RuntimeRemovedError(`runtime ${connection.runtimeId} was removed`));
      else if (signal.aborted) finish(new ConnectError("the call was cancelled", Code.Canceled));
      else if (connection.health === RuntimeHealth.READY) finish();
    };
    const finish = (error?: Error): void => {
      unsubscribe();
      signal.removeEventListener("abort", check);
      if (error) reject(error);
      else resolve();
    };
    const unsubscribe = connection.onChange(check);
    signal.addEventListener("abort", check);
    check();
  });
}
