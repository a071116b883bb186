import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import { REPO_ROOT } from "../support/cli-process.js";

/** Where the manifests live. */
export const MANIFEST_DIR = join(REPO_ROOT, "deploy", "kubernetes");

/** The fields of a Kubernetes object the tests read (the schema check covers the rest). */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; labels?: Record<string, string> };
  /** Absent on ConfigMaps and Secrets, which the tests read through other fields. */
  spec: Record<string, unknown>;
  [field: string]: unknown;
}

/** One container as the tests read it. */
export interface K8sContainer {
  name: string;
  image: string;
  command?: string[];
  args: string[];
  env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string }; secretKeyRef?: { name: string; key: string } } }[];
  envFrom?: { configMapRef?: { name: string }; secretRef?: { name: string } }[];
  ports: { name: string; containerPort: number }[];
  startupProbe?: K8sProbe;
  readinessProbe?: K8sProbe;
  livenessProbe?: K8sProbe;
  lifecycle?: { preStop?: { sleep?: { seconds: number } } };
  volumeMounts: { name: string; mountPath: string }[];
  securityContext?: Record<string, unknown>;
}

export interface K8sProbe {
  grpc?: { port: number; service?: string };
  periodSeconds?: number;
  failureThreshold?: number;
}

/** A pod template as the tests read it. */
export interface K8sPodSpec {
  terminationGracePeriodSeconds: number;
  securityContext?: Record<string, unknown>;
  containers: K8sContainer[];
  volumes?: { name: string; secret?: { secretName: string; items?: { key: string; path: string }[] } }[];
}

/** Every document of every YAML file in the directory, by file. */
export function loadManifests(dir = MANIFEST_DIR): Map<string, unknown[]> {
  const files = new Map<string, unknown[]>();
  for (const file of readdirSync(dir)
    .filter((name) => name.endsWith(".yaml"))
    .sort()) {
    const documents = parseAllDocuments(readFileSync(join(dir, file), "utf8"));
    const parsed = (Array.isArray(documents) ? documents : [documents]).map((document) => {
      if (document.errors.length > 0) throw new Error(`${file}: ${document.errors[0]?.message}`);
      return document.toJS() as unknown;
    });
    files.set(file, parsed);
  }
  return files;
}

/** The one object of `kind` named `name` among the manifests. */
export function find(objects: readonly K8sObject[], kind: string, name?: string): K8sObject {
  const matches = objects.filter((o) => o.kind === kind && (name === undefined || o.metadata.name === name));
  if (matches.length !== 1) throw new Error(`expected one ${kind}${name ? ` "${name}"` : ""}, found ${matches.length}`);
  return matches[0] as K8sObject;
}

/** The pod template of a workload (StatefulSet or Deployment). */
export function podTemplate(workload: K8sObject): { metadata: { labels: Record<string, string> }; spec: K8sPodSpec } {
  const template = workload.spec["template"];
  if (typeof template !== "object" || template === null) throw new Error(`${workload.kind} ${workload.metadata.name} has no pod template`);
  return template as { metadata: { labels: Record<string, string> }; spec: K8sPodSpec };
}

/** The pod spec of a workload. */
export function podSpec(workload: K8sObject): K8sPodSpec {
  return podTemplate(workload).spec;
}

/** The value after `flag` in an argument list (undefined when absent). */
export function flagValue(args: readonly string[], flag: string): string | undefined {
  const index = args.indexOf(flag);
  return index >= 0 ? args[index + 1] : undefined;
}

/** The StatefulSet's runtime container, as the container test runs it. */
export function runtimeContainer(): { container: K8sContainer; pod: K8sPodSpec } {
  const objects = [...loadManifests().entries()].filter(([file]) => file !== "kustomization.yaml").flatMap(([, docs]) => docs);
  const pod = podSpec(find(objects as K8sObject[], "StatefulSet"));
  const container = pod.containers[0];
  if (!container) throw new Error("the StatefulSet has no container");
  return { container, pod };
}
