import { promises as dns, type LookupAddress } from "node:dns";
import type { LookupFunction } from "node:net";
import type { Logger } from "../runtime/index.js";
import type { RemoteRuntimeSpec } from "./backend.js";
import type { RuntimeConnection } from "./runtime-connection.js";
import type { RuntimeDirectory } from "./runtime-directory.js";

/** One SRV answer: a target host and the port it serves on. */
export interface SrvAnswer {
  name: string;
  port: number;
}

/**
 * The DNS that discovery asks. The default is {@link dnsResolver}; tests
 * pass their own object whose answers they change.
 */
export interface DiscoveryResolver {
  /**
   * The SRV records of a name. A rejection whose `code` is ENOTFOUND or
   * ENODATA means "no runtimes"; any other rejection is a failed lookup.
   */
  resolveSrv(name: string): Promise<SrvAnswer[]>;
  /** Resolves a target's host name for each (re)connection; without it the system's lookup does. */
  lookup?(hostname: string): Promise<LookupAddress[]>;
}

/** Options for {@link DnsDiscovery}. */
export interface DnsDiscoveryOptions {
  /** The SRV name of the runtimes' headless Service, e.g. `_grpc._tcp.runtimes.NS.svc.cluster.local`. */
  name: string;
  /** Time between lookups (the first is at start). */
  intervalMs: number;
  /** Consecutive answers without a runtime after which it is removed (≥ 1). */
  missesBeforeRemoval: number;
  directory: RuntimeDirectory;
  /** Registers and starts connecting to a runtime (the Backend's addRemote). */
  addRemote(spec: RemoteRuntimeSpec): RuntimeConnection;
  /** Re-points a registered runtime at a new target or port (the Backend's repointRemote). */
  repointRemote(spec: RemoteRuntimeSpec): RuntimeConnection | undefined;
  /** The bearer token sent to every discovered runtime. */
  token?: () => string | undefined;
  resolver?: DiscoveryResolver;
  logger: Logger;
}

/** A runtime discovery registered, and how many answers in a row lacked it. */
interface Discovered {
  connection: RuntimeConnection;
  url: string;
  misses: number;
}

const RUNTIME_ID = /^[A-Za-z0-9._-]{1,64}$/;
/** Answers that mean the name has no records now (no ready pods), not that DNS failed. */
const NO_RECORDS = new Set(["ENOTFOUND", "ENODATA"]);

/**
 * Keeps the Backend's registry in step with a headless Service's SRV records.
 * Each record's target is a pod's stable name (`runtimes-0.runtimes.NS.svc…`);
 * its first label, the pod name, is the runtime id (the StatefulSet passes
 * the pod name as `--runtime-id`, and the connection checks the id the
 * runtime reports). Runtimes are reached by that name, not by address, so a
 * rescheduled pod with a new IP keeps its registration and relayed watches.
 * A runtime missing from `missesBeforeRemoval` answers in a row is removed;
 * a failed lookup changes nothing, so one DNS hiccup never drops runtimes.
 * Runtimes it did not register (config file, AddRuntime, the embedded one)
 * are never touched, and a discovered id that collides with one is skipped.
 */
export class DnsDiscovery {
  private readonly options: DnsDiscoveryOptions;
  private readonly resolver: DiscoveryResolver;
  private readonly lookup: LookupFunction | undefined;
  private readonly discovered = new Map<string, Discovered>();
  /** Ids already warned about (a collision or a bad name), so a warning is not repeated every interval. */
  private readonly warned = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(options: DnsDiscoveryOptions) {
    if (!Number.isSafeInteger(options.missesBeforeRemoval) || options.missesBeforeRemoval < 1)
      throw new RangeError("missesBeforeRemoval must be a whole number >= 1");
    this.options = options;
    this.resolver = options.resolver ?? dnsResolver();
    this.lookup = this.resolver.lookup ? lookupFunction(this.resolver.lookup.bind(this.resolver)) : undefined;
  }

  /** Looks up now, then every interval until {@link stop}. */
  start(): void {
    const tick = (): void => {
      void this.refresh().finally(() => {
        if (!this.stopped) this.timer = setTimeout(tick, this.options.intervalMs);
      });
    };
    tick();
  }

  /** Stops looking up; registered runtimes stay until the Backend closes. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  /** The ids this discovery registered and still owns. */
  get runtimeIds(): string[] {
    return [...this.discovered.keys()].sort();
  }

  /** One lookup and the registry changes it implies. */
  async refresh(): Promise<void> {
    const { name } = this.options;
    let answers: SrvAnswer[];
    try {
      answers = await this.resolver.resolveSrv(name);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException | undefined)?.code;
      if (code === undefined || !NO_RECORDS.has(code)) {
        // Once per outage and kind of failure, not every interval while DNS is down.
        const kind = code ?? "unknown";
        if (!this.stopped)
          this.warnOnce(`lookup:${kind}`, "dns discovery lookup failed; keeping the current runtimes", { name, code: kind });
        return;
      }
      answers = [];
    }
    if (this.stopped) return;
    for (const key of this.warned) if (key.startsWith("lookup:")) this.warned.delete(key);
    if (answers.length === 0) {
      // A misspelt name or namespace answers exactly like a Service with no ready pod: say so once, not every interval.
      this.warnOnce("empty", "dns discovery: the name has no records (no ready runtime, or a wrong --discover-dns name)", { name });
    } else {
      this.warned.delete("empty");
    }
    const seen = this.urlsById(answers);
    for (const [runtimeId, url] of seen) this.keep(runtimeId, url);
    this.countMisses(seen);
  }

  /** The runtime id and URL of each usable answer (the first answer wins for a repeated id). */
  private urlsById(answers: readonly SrvAnswer[]): Map<string, string> {
    const urls = new Map<string, string>();
    for (const answer of answers) {
      const host = answer.name.replace(/\.$/, "").toLowerCase();
      const runtimeId = host.split(".")[0] ?? "";
      if (!RUNTIME_ID.test(runtimeId) || !Number.isInteger(answer.port) || answer.port < 1 || answer.port > 65535) {
        this.warnOnce(`bad:${host}`, "dns discovery ignores a record", { target: host.slice(0, 255), port: answer.port });
        continue;
      }
      if (!urls.has(runtimeId)) urls.set(runtimeId, `http://${host}:${answer.port}`);
    }
    return urls;
  }

  /**
   * Registers a runtime that appeared, or re-points one whose target or
   * port changed: in place, so the watches relayed from it resume at the new
   * address instead of ending as for a runtime gone.
   */
  private keep(runtimeId: string, url: string): void {
    const { directory, logger } = this.options;
    const spec: RemoteRuntimeSpec = {
      runtimeId,
      url,
      ...(this.options.token ? { token: this.options.token } : {}),
      ...(this.lookup ? { lookup: this.lookup } : {}),
    };
    const known = this.owned(runtimeId);
    if (known) {
      known.misses = 0;
      if (known.url === url) return;
      this.options.repointRemote(spec);
      known.url = url;
      return;
    }
    if (directory.get(runtimeId)) {
      this.warnOnce(`taken:${runtimeId}`, "dns discovery skips a runtime id that is already registered", { runtime_id: runtimeId });
      return;
    }
    const connection = this.options.addRemote(spec);
    this.discovered.set(runtimeId, { connection, url, misses: 0 });
    this.warned.delete(`taken:${runtimeId}`);
    logger.info("runtime discovered", { runtime_id: runtimeId, endpoint: connection.endpoint });
  }

  /** Counts a miss for every owned runtime the answer lacked; removes those past the limit. */
  private countMisses(seen: ReadonlyMap<string, string>): void {
    for (const runtimeId of [...this.discovered.keys()]) {
      if (seen.has(runtimeId)) continue;
      const known = this.owned(runtimeId);
      if (!known) continue;
      known.misses += 1;
      if (known.misses < this.options.missesBeforeRemoval) continue;
      this.options.directory.remove(runtimeId);
      this.discovered.delete(runtimeId);
      this.options.logger.info("runtime gone from dns; removed", { runtime_id: runtimeId, misses: known.misses });
    }
  }

  /** The entry of a runtime discovery registered, if the registry still holds that same connection. */
  private owned(runtimeId: string): Discovered | undefined {
    const known = this.discovered.get(runtimeId);
    if (known && this.options.directory.get(runtimeId) === known.connection) return known;
    // Removed by someone else (RemoveRuntime): the DNS answer decides anew.
    this.discovered.delete(runtimeId);
    return undefined;
  }

  private warnOnce(key: string, message: string, fields: Record<string, unknown>): void {
    if (this.warned.has(key)) return;
    this.warned.add(key);
    this.options.logger.warn(message, fields);
  }
}

/**
 * Discovery's DNS: SRV records, and the addresses of their targets for
 * every (re)connection, asked through Node's own resolver (c-ares) with
 * short timeouts, so a lookup ends well within the interval. The system's
 * lookup (getaddrinfo) runs on libuv's thread pool, four threads shared
 * with the file store's disk I/O: a slow or unreachable DNS server would
 * hold those threads for its timeout at every reconnection and stall the
 * store. It is asked only for a name DNS does not know (ENOTFOUND,
 * ENODATA), such as one in /etc/hosts. `servers` replaces the system's
 * DNS servers and `timeoutMs` the 2 s per try (tests).
 */
export function dnsResolver(options: { servers?: string[]; timeoutMs?: number } = {}): Required<DiscoveryResolver> {
  const resolver = new dns.Resolver({ timeout: options.timeoutMs ?? 2_000, tries: 2 });
  if (options.servers) resolver.setServers(options.servers);
  return {
    resolveSrv: (name) => resolver.resolveSrv(name),
    lookup: async (hostname) => {
      const [v4, v6] = await Promise.allSettled([
        resolver.resolve4(hostname).then((all) => all.map((address): LookupAddress => ({ address, family: 4 }))),
        resolver.resolve6(hostname).then((all) => all.map((address): LookupAddress => ({ address, family: 6 }))),
      ]);
      const found = [...(v4.status === "fulfilled" ? v4.value : []), ...(v6.status === "fulfilled" ? v6.value : [])];
      if (found.length > 0) return found;
      // DNS that fails (a timeout, a refused query) is an error, as the system's lookup would report it, not a reason to ask that too.
      for (const result of [v4, v6]) {
        const code = (result.status === "rejected" ? (result.reason as NodeJS.ErrnoException).code : undefined) ?? "";
        if (result.status === "rejected" && !NO_RECORDS.has(code)) throw result.reason;
      }
      return dns.lookup(hostname, { all: true });
    },
  };
}

/** Adapts a promise lookup to the callback form sockets take (single or `all` answers, by family). */
function lookupFunction(lookup: (hostname: string) => Promise<LookupAddress[]>): LookupFunction {
  return (hostname, options, callback) => {
    lookup(hostname).then(
      (all) => {
        const addresses = options.family === 4 || options.family === 6 ? all.filter((a) => a.family === options.family) : all;
        const first = addresses[0];
        if (options.all) callback(null, addresses);
        else if (first) callback(null, first.address, first.family);
        else callback(Object.assign(new Error(`no address for ${hostname}`), { code: "ENOTFOUND" }), "", 0);
      },
      (error: NodeJS.ErrnoException) => callback(error, "", 0),
    );
  };
}
