import { ConfigMap, Secret, Service } from "kubernetes-models/v1";
import { Deployment, StatefulSet } from "kubernetes-models/apps/v1";
import { PodDisruptionBudget } from "kubernetes-models/policy/v1";
import { describe, expect, it } from "vitest";
import { DEFAULT_LIMITS } from "../../src/runtime/index.js";
import { TRACING_FLUSH_TIMEOUT_MS } from "../../src/telemetry/tracing/start-tracing.js";
import {
  find,
  flagValue,
  type K8sContainer,
  type K8sObject,
  type K8sPodSpec,
  loadManifests,
  podSpec,
  podTemplate,
} from "./kubernetes-manifests.js";

/**
 * deploy/kubernetes: every object validates against the Kubernetes schemas
 * (kubernetes-models), and the references between objects that a schema
 * cannot see line up — the StatefulSet's Service, ports, probes, grace
 * periods, Secrets, labels and the Backend's discovery name.
 */

/** The schema classes, by apiVersion and kind; a kind not listed here fails the test. */
const MODELS: Record<string, new (data: never) => { validate(): void }> = {
  "v1/ConfigMap": ConfigMap,
  "v1/Secret": Secret,
  "v1/Service": Service,
  "apps/v1/StatefulSet": StatefulSet,
  "apps/v1/Deployment": Deployment,
  "policy/v1/PodDisruptionBudget": PodDisruptionBudget,
};

const files = loadManifests();
const kustomization = files.get("kustomization.yaml")?.[0] as { resources: string[]; images?: { name: string }[] } | undefined;
const applied = (kustomization?.resources ?? []).flatMap((file) => (files.get(file) ?? []) as K8sObject[]);
const secrets = (files.get("secrets.example.yaml") ?? []) as K8sObject[];
const all = [...applied, ...secrets];

const statefulSet = find(applied, "StatefulSet");
const runtimePod = podSpec(statefulSet);
const runtime = runtimePod.containers[0] as K8sContainer;
const headless = find(applied, "Service", statefulSet.spec["serviceName"] as string);
const deployment = find(applied, "Deployment");
const backendPod = podSpec(deployment);
const backend = backendPod.containers[0] as K8sContainer;

function validate(object: K8sObject): void {
  const Model = MODELS[`${object.apiVersion}/${object.kind}`];
  if (!Model) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
  new Model(object as never).validate();
}

function labelsMatch(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.keys(selector).length > 0 && Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

function podLabels(workload: K8sObject): Record<string, string> {
  return podTemplate(workload).metadata.labels;
}

/** The secret and key a file path under a container's secret volume mount reads. */
function secretKeyAt(pod: K8sPodSpec, container: K8sContainer, path: string): { secret: string; key: string } {
  for (const mount of container.volumeMounts) {
    if (!path.startsWith(`${mount.mountPath}/`)) continue;
    const volume = pod.volumes?.find((v) => v.name === mount.name);
    if (!volume?.secret) continue;
    const file = path.slice(mount.mountPath.length + 1);
    const item = volume.secret.items?.find((i) => i.path === file);
    if (volume.secret.items && !item) throw new Error(`${path}: the secret volume does not project ${file}`);
    return { secret: volume.secret.secretName, key: item?.key ?? file };
  }
  throw new Error(`${path} is not in a mounted secret`);
}

function expectSecretKey(ref: { secret: string; key: string }): void {
  const secret = find(secrets, "Secret", ref.secret);
  expect(Object.keys((secret["stringData"] ?? secret["data"]) as Record<string, string>), `${ref.secret}`).toContain(ref.key);
}

/** Seconds from SIGTERM-to-be (preStop start) to the end of the drain, per the container's own settings. */
function drainSeconds(container: K8sContainer): number {
  const graceMs = Number(flagValue(container.args, "--shutdown-grace-ms"));
  expect(Number.isSafeInteger(graceMs)).toBe(true);
  const flushFlag = flagValue(container.args, "--shutdown-flush-ms");
  const flushMs = flushFlag !== undefined ? Number(flushFlag) : DEFAULT_LIMITS.flushTimeoutMs;
  // After the grace, a run still going is cancelled, and a backend that ignores its abort gets cancelGraceMs more;
  // then the store gets at most flushTimeoutMs (--shutdown-flush-ms) to write what the drain recorded and close.
  return (container.lifecycle?.preStop?.sleep?.seconds ?? 0) + (graceMs + DEFAULT_LIMITS.cancelGraceMs + flushMs) / 1000;
}

describe("Kubernetes manifests", () => {
  it("parse, and the kustomization lists every manifest but the example Secrets", () => {
    expect(kustomization?.resources.slice().sort()).toEqual(
      [...files.keys()].filter((file) => file !== "kustomization.yaml" && file !== "secrets.example.yaml").sort(),
    );
    expect(applied.map((o) => o.kind).sort()).toEqual([
      "ConfigMap",
      "Deployment",
      "PodDisruptionBudget",
      "Service",
      "Service",
      "StatefulSet",
    ]);
    expect(applied.some((o) => o.kind === "Secret")).toBe(false);
  });

  it("validate against the Kubernetes schemas", () => {
    for (const object of all) expect(() => validate(object), `${object.kind} ${object.metadata.name}`).not.toThrow();
    // The validator is not vacuous: the same StatefulSet with a named port in its gRPC probe is refused.
    const broken = structuredClone(statefulSet);
    (podSpec(broken).containers[0] as { livenessProbe: { grpc: { port: unknown } } }).livenessProbe.grpc.port = "grpc";
    expect(() => validate(broken)).toThrow(/grpc\/port/);
  });

  it("run the runtimes as a StatefulSet behind a headless Service", () => {
    expect(headless.spec["clusterIP"]).toBe("None");
    expect(headless.spec["publishNotReadyAddresses"]).toBe(false);
    expect(labelsMatch((statefulSet.spec["selector"] as { matchLabels: Record<string, string> }).matchLabels, podLabels(statefulSet))).toBe(
      true,
    );
    expect(labelsMatch(headless.spec["selector"] as Record<string, string>, podLabels(statefulSet))).toBe(true);
    expect(labelsMatch(headless.spec["selector"] as Record<string, string>, podLabels(deployment))).toBe(false);
    const port = Number(flagValue(runtime.args, "--port"));
    const grpc = runtime.ports.find((p) => p.name === "grpc");
    expect(grpc?.containerPort).toBe(port);
    const servicePorts = headless.spec["ports"] as { name: string; port: number; targetPort: string | number }[];
    expect(servicePorts.map((p) => [p.name, p.port, p.targetPort])).toEqual([["grpc", port, "grpc"]]);
  });

  it("give each runtime its pod name as id, a volume for its store and the token from a Secret", () => {
    expect(flagValue(runtime.args, "--host")).toBe("0.0.0.0");
    expect(flagValue(runtime.args, "--runtime-id")).toBe("$(POD_NAME)");
    expect(runtime.env?.find((e) => e.name === "POD_NAME")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.name");
    const dataDir = flagValue(runtime.args, "--data-dir");
    const claims = (statefulSet.spec["volumeClaimTemplates"] as { metadata: { name: string } }[]).map((c) => c.metadata.name);
    const dataMount = runtime.volumeMounts.find((m) => m.mountPath === dataDir);
    expect(dataMount && claims.includes(dataMount.name)).toBe(true);
    expectSecretKey(secretKeyAt(runtimePod, runtime, flagValue(runtime.args, "--token-file") ?? ""));
  });

  it("probe grpc.health.v1 on the container's gRPC port, in both workloads", () => {
    for (const container of [runtime, backend]) {
      const port = Number(flagValue(container.args, "--port"));
      expect(container.ports.find((p) => p.name === "grpc")?.containerPort).toBe(port);
      for (const probe of [container.readinessProbe, container.livenessProbe]) expect(probe?.grpc?.port).toBe(port);
      if (container.startupProbe) expect(container.startupProbe.grpc?.port).toBe(port);
    }
  });

  it("serve metrics on a named container port, reachable from the pod IP, in both workloads", () => {
    for (const container of [runtime, backend]) {
      const port = Number(flagValue(container.args, "--metrics-port"));
      expect(port).toBeGreaterThan(0);
      expect(container.ports.find((p) => p.name === "metrics")?.containerPort).toBe(port);
      expect(flagValue(container.args, "--metrics-host")).toBe("0.0.0.0");
    }
  });

  it("give each pod more time to terminate than its preStop plus its drain, and liveness longer still", () => {
    for (const [pod, container] of [
      [runtimePod, runtime],
      [backendPod, backend],
    ] as const) {
      expect(container.lifecycle?.preStop?.sleep?.seconds).toBeGreaterThan(0);
      // After the drain: closing connections (2 s at most), then at most the bounded flush of the last spans.
      expect(pod.terminationGracePeriodSeconds).toBeGreaterThan(drainSeconds(container) + 2 + TRACING_FLUSH_TIMEOUT_MS / 1000);
      const liveness = container.livenessProbe;
      // A draining process answers NOT_SERVING: liveness must not kill it before the drain ends.
      expect((liveness?.periodSeconds ?? 10) * (liveness?.failureThreshold ?? 3)).toBeGreaterThanOrEqual(pod.terminationGracePeriodSeconds);
    }
  });

  it("let the runtime restore its most workers before the startup probe gives up", () => {
    // Measured (docs/performance.md, "Start-up with thousands of workers"): 1.1-1.7 ms of CPU per
    // idle worker on the 2-core dev VM, the port closed until the restore ends. Twice the worst
    // figure for the default maximum leaves room for a busy node.
    const restoreSeconds = (DEFAULT_LIMITS.maxWorkers * 1.7 * 2) / 1000;
    const startup = runtime.startupProbe;
    expect((startup?.periodSeconds ?? 10) * (startup?.failureThreshold ?? 3)).toBeGreaterThanOrEqual(restoreSeconds);
  });

  it("run as non-root on a read-only root file system", () => {
    for (const [pod, container] of [
      [runtimePod, runtime],
      [backendPod, backend],
    ] as const) {
      expect(pod.securityContext?.["runAsNonRoot"]).toBe(true);
      expect(pod.securityContext?.["runAsUser"]).toBeGreaterThan(0);
      expect(container.securityContext?.["readOnlyRootFilesystem"]).toBe(true);
      expect(container.securityContext?.["allowPrivilegeEscalation"]).toBe(false);
      expect(container.image).toMatch(/^worker-runtime:/);
      expect(container.command).toBeUndefined();
    }
    expect(kustomization?.images?.map((i) => i.name)).toEqual(["worker-runtime"]);
  });

  it("protect the runtimes with a PodDisruptionBudget that selects them and only them", () => {
    const pdb = find(applied, "PodDisruptionBudget");
    const selector = (pdb.spec["selector"] as { matchLabels: Record<string, string> }).matchLabels;
    expect(labelsMatch(selector, podLabels(statefulSet))).toBe(true);
    expect(labelsMatch(selector, podLabels(deployment))).toBe(false);
    expect(pdb.spec["maxUnavailable"]).toBe(1);
  });

  it("let the Backend discover the runtimes through the headless Service's SRV name, with the runtimes' token", () => {
    const portName = (headless.spec["ports"] as { name: string }[])[0]?.name;
    expect(flagValue(backend.args, "--discover-dns")).toBe(
      `_${portName}._tcp.${headless.metadata.name}.$(POD_NAMESPACE).svc.cluster.local`,
    );
    expect(backend.env?.find((e) => e.name === "POD_NAMESPACE")?.valueFrom?.fieldRef?.fieldPath).toBe("metadata.namespace");
    // The token the Backend sends is the one the runtimes require.
    const sent = secretKeyAt(backendPod, backend, flagValue(backend.args, "--discover-token-file") ?? "");
    expect(sent).toEqual(secretKeyAt(runtimePod, runtime, flagValue(runtime.args, "--token-file") ?? ""));
    const own = secretKeyAt(backendPod, backend, flagValue(backend.args, "--token-file") ?? "");
    expectSecretKey(own);
    expect(own).not.toEqual(sent);
    const service = find(applied, "Service", "backend");
    expect(labelsMatch(service.spec["selector"] as Record<string, string>, podLabels(deployment))).toBe(true);
    // Each replica lists its own embedded runtime (the console's fallback): a browser stays on one replica.
    expect(service.spec["sessionAffinity"]).toBe("ClientIP");
    // No provider key on the replicas: their embedded runtimes cannot run workers, so the console
    // places companions on the StatefulSet's runtimes, where every replica finds them.
    expect(backend.env?.map((e) => e.name)).not.toContain("OPENAI_API_KEY");
    expect(backend.envFrom?.some((e) => e.secretRef !== undefined) ?? false).toBe(false);
    const names = backend.ports.map((p) => p.name);
    for (const port of service.spec["ports"] as { targetPort: string }[]) expect(names).toContain(port.targetPort);
    expect(backend.ports.find((p) => p.name === "http")?.containerPort).toBe(Number(flagValue(backend.args, "--http1-port")));
  });

  it("read every Secret and ConfigMap they name, with the keys they name", () => {
    for (const container of [runtime, backend]) {
      for (const env of container.env ?? []) {
        const ref = env.valueFrom?.secretKeyRef;
        if (ref) expectSecretKey({ secret: ref.name, key: ref.key });
      }
      for (const source of container.envFrom ?? []) {
        if (source.configMapRef) expect(() => find(applied, "ConfigMap", source.configMapRef?.name)).not.toThrow();
        if (source.secretRef) expect(() => find(secrets, "Secret", source.secretRef?.name)).not.toThrow();
      }
    }
    for (const pod of [runtimePod, backendPod]) {
      for (const volume of pod.volumes ?? []) {
        if (!volume.secret) continue;
        const secret = find(secrets, "Secret", volume.secret.secretName);
        for (const item of volume.secret.items ?? []) expect(Object.keys(secret["stringData"] as object)).toContain(item.key);
      }
    }
  });
});
