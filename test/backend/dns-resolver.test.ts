import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";
import { create } from "@bufbuild/protobuf";
import { afterEach, describe, expect, it } from "vitest";
import { RuntimeHealth } from "../../gen/worker_runtime/v1/backend_pb.js";
import { CreateWorkerRequestSchema } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { createBackend, DnsDiscovery, dnsResolver } from "../../src/backend/index.js";
import { createRuntime, silentLogger } from "../../src/runtime/index.js";
import { FakeDnsServer } from "../support/fake-dns.js";
import { eventually, startHarness, type Harness } from "../support/harness.js";

/**
 * Discovery's default DNS asks a DNS server itself (Node's resolver), not
 * the system's lookup, which runs on the thread pool the file store's disk
 * I/O shares. A real DNS server on 127.0.0.1 (UDP) answers; the system's
 * lookup is asked only for a name DNS does not know.
 */
const closers: (() => unknown)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function fakeDns(): Promise<FakeDnsServer> {
  const dns = await FakeDnsServer.start();
  closers.push(() => dns.close());
  return dns;
}

describe("discovery's DNS resolver", () => {
  it("resolves SRV records and their targets' addresses through the DNS server", async () => {
    const dns = await fakeDns();
    dns.records.set("_grpc._tcp.rt.test", [{ type: "SRV", target: "rt-0.rt.test", port: 7443 }]);
    dns.records.set("rt-0.rt.test", [{ type: "A", address: "127.0.0.2" }]);
    const resolver = dnsResolver({ servers: [dns.address] });
    expect(await resolver.resolveSrv("_grpc._tcp.rt.test")).toMatchObject([{ name: "rt-0.rt.test", port: 7443 }]);
    expect(await resolver.lookup("rt-0.rt.test")).toEqual([{ address: "127.0.0.2", family: 4 }]);
    expect(dns.queries).toContain("rt-0.rt.test");
  });

  it("asks the system's lookup only for a name DNS does not know (such as one in /etc/hosts)", async () => {
    const dns = await fakeDns();
    const addresses = await dnsResolver({ servers: [dns.address] }).lookup("localhost");
    expect(dns.queries).toContain("localhost");
    expect(addresses.length).toBeGreaterThan(0);
    expect(addresses.every((a) => a.address === "127.0.0.1" || a.address === "::1")).toBe(true);
  });

  it("reports a DNS server that does not answer as the failure it is, without asking the system's lookup", async () => {
    const silent: Socket = createSocket("udp4");
    silent.bind(0, "127.0.0.1");
    await once(silent, "listening");
    closers.push(() => silent.close());
    const resolver = dnsResolver({ servers: [`127.0.0.1:${silent.address().port}`], timeoutMs: 100 });
    // "localhost" is in /etc/hosts: had the system's lookup been asked, it would have answered.
    await expect(resolver.lookup("localhost")).rejects.toMatchObject({ code: "ETIMEOUT" });
  });

  it("lets discovery find a runtime by SRV and reach it by its name through that DNS", async () => {
    const harness: Harness = await startHarness({ runtimeId: "rt-0" });
    closers.push(() => harness.close());
    await harness.runtime.createWorker(create(CreateWorkerRequestSchema, { runtimeId: "rt-0" }));
    const embedded = await createRuntime({ logger: silentLogger, runtimeId: "emb" });
    const backend = createBackend({ runtime: embedded, logger: silentLogger, backoff: { initialMs: 50, maxMs: 200 } });
    closers.push(
      () => embedded.close(),
      () => backend.close(),
    );
    const dns = await fakeDns();
    dns.records.set("_grpc._tcp.rt.test", [{ type: "SRV", target: "rt-0.rt.test", port: Number(new URL(harness.baseUrl).port) }]);
    dns.records.set("rt-0.rt.test", [{ type: "A", address: "127.0.0.1" }]);
    const discovery = new DnsDiscovery({
      name: "_grpc._tcp.rt.test",
      intervalMs: 50,
      missesBeforeRemoval: 3,
      directory: backend.directory,
      addRemote: (spec) => backend.addRemote(spec),
      repointRemote: (spec) => backend.repointRemote(spec),
      resolver: dnsResolver({ servers: [dns.address] }),
      logger: silentLogger,
    });
    closers.push(() => discovery.stop());
    discovery.start();
    await eventually(() => backend.directory.get("rt-0")?.health === RuntimeHealth.READY, 10_000, "rt-0 READY");
    expect(dns.queries).toContain("rt-0.rt.test");
  });
});
