import { execFile } from "node:child_process";
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { type Client, createClient } from "@connectrpc/connect";
import { createGrpcTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RunStatus } from "../../gen/worker_runtime/v1/run_pb.js";
import { WorkerCatalog } from "../../gen/worker_runtime/v1/worker_catalog_pb.js";
import { WorkerInteraction } from "../../gen/worker_runtime/v1/worker_interaction_pb.js";
import { type CliProcess, REPO_ROOT, startCli } from "../support/cli-process.js";
import { startFakeOpenAI, type FakeOpenAI } from "../support/fake-openai.js";
import { reply } from "../support/openai-chunks.js";
import { find, flagValue, type K8sObject, loadManifests, podSpec, runtimeContainer } from "./kubernetes-manifests.js";

/**
 * The container as Kubernetes runs it, without Docker: the Dockerfile's
 * runtime stage rebuilt in a scratch directory (its own `npm ci` line for the
 * production dependencies, dist/ compiled from src/, gen/ beside it), then
 * the image's ENTRYPOINT with exactly the StatefulSet's arguments and
 * environment — only the pod name, paths, port and loopback host replaced —
 * against the fake provider. SIGTERM with a run in flight must end the
 * process with exit 0 well within the pod's grace period, the run drained to
 * its end and recorded on the "volume". Slow: an npm install and a compile.
 */

const run = promisify(execFile);

/** One stage of the Dockerfile: its FROM line and its instructions (continuations joined). */
interface Stage {
  from: string;
  instructions: { keyword: string; rest: string }[];
}

function parseDockerfile(text: string): Stage[] {
  const stages: Stage[] = [];
  const joined = text.replace(/\\\n/g, " ");
  for (const raw of joined.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const [keyword = "", ...rest] = line.split(/\s+/);
    const instruction = { keyword: keyword.toUpperCase(), rest: rest.join(" ") };
    if (instruction.keyword === "FROM") stages.push({ from: instruction.rest, instructions: [] });
    else stages.at(-1)?.instructions.push(instruction);
  }
  return stages;
}

const dockerfile = parseDockerfile(await readFile(join(REPO_ROOT, "Dockerfile"), "utf8"));
const finalStage = dockerfile.at(-1) as Stage;
const entrypointLine = finalStage.instructions.filter((i) => i.keyword === "ENTRYPOINT").at(-1)?.rest ?? "";
const entrypoint = JSON.parse(entrypointLine) as string[];
/** The npm command of the runtime stage that installs its dependencies. */
const productionInstall = finalStage.instructions
  .filter((i) => i.keyword === "RUN")
  .flatMap((i) => i.rest.split("&&").map((part) => part.trim()))
  .filter((command) => /^npm (ci|install)\b/.test(command));

describe("Dockerfile", () => {
  it("is multi-stage; the image's ENTRYPOINT is exec-form node dist/cli/main.js under tini", () => {
    expect(dockerfile.length).toBeGreaterThanOrEqual(2);
    expect(entrypointLine.startsWith("[")).toBe(true);
    expect(entrypoint.slice(-2)).toEqual(["node", "dist/cli/main.js"]);
    // Anything before node is tini, which passes signals on and exits with node's code.
    expect(entrypoint.slice(0, -2)).toEqual(["/usr/bin/tini", "--"]);
    expect(finalStage.instructions.some((i) => i.keyword === "RUN" && /apt-get install .*\btini\b/.test(i.rest))).toBe(true);
    const cmd = finalStage.instructions.find((i) => i.keyword === "CMD")?.rest;
    expect(cmd === undefined || cmd.startsWith("[")).toBe(true);
  });

  it("runs as a numeric non-root user, the one the manifests name", () => {
    const user = finalStage.instructions.filter((i) => i.keyword === "USER").at(-1)?.rest ?? "root";
    const uid = Number(user.split(":")[0]);
    expect(Number.isInteger(uid) && uid > 0).toBe(true);
    const { pod } = runtimeContainer();
    expect(pod.securityContext?.["runAsUser"]).toBe(uid);
  });

  it("EXPOSEs every port the manifests' containers serve (metrics included), for docker run -P", () => {
    const exposed = finalStage.instructions
      .filter((i) => i.keyword === "EXPOSE")
      .flatMap((i) => i.rest.split(/\s+/))
      .map((port) => Number(port.split("/")[0]));
    const workloads = [...loadManifests().values()].flat() as K8sObject[];
    const served = workloads
      .filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment")
      .flatMap((o) => podSpec(o).containers.flatMap((c) => c.ports.map((p) => p.containerPort)));
    expect(served).toContain(9464);
    expect([...new Set(exposed)].sort()).toEqual([...new Set(served)].sort());
  });

  it("installs only production dependencies in the final stage and builds nothing there", () => {
    expect(productionInstall).toHaveLength(1);
    expect(productionInstall[0]).toMatch(/^npm ci .*--omit=dev/);
    expect(productionInstall[0]).toContain("--ignore-scripts");
    const runs = finalStage.instructions.filter((i) => i.keyword === "RUN").map((i) => i.rest);
    expect(runs.some((r) => /npm run|tsc|esbuild/.test(r))).toBe(false);
    const copies = finalStage.instructions.filter((i) => i.keyword === "COPY").map((i) => i.rest);
    expect(copies).toContain("--from=build /app/dist ./dist");
    expect(copies.some((c) => /^gen\b|--from=build \/app\/gen/.test(c))).toBe(true);
    expect(copies.some((c) => /\bsrc\b|node_modules/.test(c))).toBe(false);
  });
});

describe("the runtime container", () => {
  let scratch: string;
  let fake: FakeOpenAI;
  const processes: CliProcess[] = [];
  const sessions: Http2SessionManager[] = [];

  beforeAll(async () => {
    scratch = await mkdtemp(join(tmpdir(), "worker-runtime-image-"));
    const app = join(scratch, "app");
    await mkdir(app);
    for (const file of ["package.json", "package-lock.json"]) await cp(join(REPO_ROOT, file), join(app, file));
    const [npm, ...npmArgs] = (productionInstall[0] ?? "").split(/\s+/);
    await run(npm ?? "npm", npmArgs, { cwd: app, maxBuffer: 16 * 1024 * 1024, env: { ...process.env, NODE_OPTIONS: "" } });
    // The build stage's compile (the web console bundle is not needed to serve).
    await run(
      process.execPath,
      [
        join(REPO_ROOT, "node_modules/typescript/bin/tsc"),
        "-p",
        "tsconfig.build.json",
        "--outDir",
        join(app, "dist"),
        "--tsBuildInfoFile",
        join(scratch, "tsbuildinfo"),
      ],
      { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 },
    );
    await cp(join(REPO_ROOT, "gen"), join(app, "gen"), { recursive: true });
    fake = await startFakeOpenAI();
  }, 300_000);

  afterAll(async () => {
    for (const session of sessions) session.abort();
    for (const cli of processes) cli.kill();
    await fake?.close();
    if (scratch) await rm(scratch, { recursive: true, force: true });
  });

  it("has production dependencies only", () => {
    const modules = join(scratch, "app", "node_modules");
    for (const present of ["@connectrpc/connect-node", "@connectrpc/connect", "@bufbuild/protobuf", "openai"]) {
      expect(existsSync(join(modules, present)), present).toBe(true);
    }
    for (const absent of ["typescript", "tsx", "vitest", "kubernetes-models", "esbuild"])
      expect(existsSync(join(modules, absent)), absent).toBe(false);
  });

  it("accepts the Backend Deployment's arguments (strict flag parsing; --help stops before anything starts)", async () => {
    const objects = [...loadManifests().values()].flat() as K8sObject[];
    const backend = podSpec(find(objects, "Deployment")).containers[0];
    const cli = startCli(
      [...(backend?.args ?? []), "--help"],
      { NODE_OPTIONS: "" },
      {
        nodeArgs: entrypoint.slice(entrypoint.indexOf("node") + 1),
        cwd: join(scratch, "app"),
      },
    );
    processes.push(cli);
    expect(backend?.args[0]).toBe("backend");
    expect(await cli.exited).toEqual({ code: 0, signal: null });
    expect(cli.stdout()).toContain("--discover-dns NAME");
    // The console's files are where the image puts dist/ (the build stage's `npm run build` writes dist/web).
    const workdir = finalStage.instructions.filter((i) => i.keyword === "WORKDIR").at(-1)?.rest;
    expect(flagValue(backend?.args ?? [], "--console")).toBe(`${workdir}/dist/web`);
  });

  it("drains on SIGTERM: exit 0 well within the grace period, the in-flight run completed and stored", async () => {
    const { container, pod } = runtimeContainer();
    const app = join(scratch, "app");
    const token = "container-test-token";
    const tokenFile = join(scratch, "runtime-token");
    await writeFile(tokenFile, `${token}\n`, { mode: 0o600 });
    const podName = "runtimes-0";
    // Exactly the manifest's arguments; only what differs outside a pod is replaced.
    const replacements: Record<string, string> = {
      "--host": "127.0.0.1",
      "--port": "0",
      "--data-dir": join(scratch, "data"),
      "--token-file": tokenFile,
    };
    const args = container.args.map((arg, index) => {
      const flag = container.args[index - 1] ?? "";
      return replacements[flag] ?? arg.replaceAll("$(POD_NAME)", podName);
    });
    expect(Object.keys(replacements).every((flag) => container.args.includes(flag))).toBe(true);
    const objects = [...loadManifests().values()].flat() as K8sObject[];
    const env: Record<string, string> = { NODE_OPTIONS: "" };
    for (const source of container.envFrom ?? []) {
      if (source.configMapRef) Object.assign(env, find(objects, "ConfigMap", source.configMapRef.name)["data"]);
    }
    // The provider is the fake one.
    env["OPENAI_BASE_URL"] = fake.baseURL;
    for (const variable of container.env ?? []) {
      if (variable.valueFrom?.fieldRef?.fieldPath === "metadata.name") env[variable.name] = podName;
      else if (variable.valueFrom?.secretKeyRef) env[variable.name] = "test-provider-key";
      else if (variable.value !== undefined) env[variable.name] = variable.value;
    }
    // The ENTRYPOINT after tini: `node dist/cli/main.js`, run from the image's WORKDIR.
    const entry = { nodeArgs: entrypoint.slice(entrypoint.indexOf("node") + 1), cwd: app };
    const start = (): CliProcess => {
      const cli = startCli(args, env, entry);
      processes.push(cli);
      return cli;
    };

    const text = "a reply that streams for a while, so that SIGTERM lands in the middle of it";
    fake.enqueue(reply({ text, pieceSize: 4 }, { delayMs: 60 }));
    const cli = start();
    const listening = await cli.listening;
    expect(listening.runtimeId).toBe(podName);
    const clients = (address: string): { catalog: Client<typeof WorkerCatalog>; interaction: Client<typeof WorkerInteraction> } => {
      const baseUrl = `http://${address}`;
      const session = new Http2SessionManager(baseUrl);
      sessions.push(session);
      const transport = createGrpcTransport({
        baseUrl,
        sessionManager: session,
        interceptors: [
          (next) => (request) => {
            request.header.set("authorization", `Bearer ${token}`);
            return next(request);
          },
        ],
      });
      return { catalog: createClient(WorkerCatalog, transport), interaction: createClient(WorkerInteraction, transport) };
    };
    const first = clients(listening.h2c);
    const worker = (await first.catalog.createWorker({ runtimeId: podName })).worker?.ref;
    const sent = (await first.interaction.sendInput({ worker, input: { text: "hello" } })).run;
    await fake.waitForRequests(1);
    // The reply is mid-stream: some of it sent, most of it not.
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect((await first.interaction.getRun({ worker, runId: sent?.runId ?? "" })).run?.status).toBe(RunStatus.RUNNING);

    const signalled = performance.now();
    cli.child.kill("SIGTERM");
    const budgetMs = (pod.terminationGracePeriodSeconds - (container.lifecycle?.preStop?.sleep?.seconds ?? 0)) * 1000;
    const exited = await Promise.race([
      cli.exited,
      new Promise<"still running">((resolve) => setTimeout(() => resolve("still running"), budgetMs)),
    ]);
    // On failure, what the process logged says why (a failed drain logs "shutdown failed" with its reason).
    expect(exited, cli.stderr().slice(-4000)).toEqual({ code: 0, signal: null });
    // Well within: the drain waited for the run (a few seconds), not for the whole grace.
    expect(performance.now() - signalled).toBeLessThan(Number(flagValue(container.args, "--shutdown-grace-ms")));
    expect(fake.requests[0]?.clientClosedAt).toBeUndefined();

    // The pod comes back on the same volume: the run is there, ended, with the whole answer.
    const again = start();
    const relistening = await again.listening;
    expect(relistening.runtimeId).toBe(podName);
    const second = clients(relistening.h2c);
    const stored = (await second.interaction.getRun({ worker, runId: sent?.runId ?? "" })).run;
    expect(stored?.status).toBe(RunStatus.COMPLETED);
    again.child.kill("SIGTERM");
    expect(await again.exited).toEqual({ code: 0, signal: null });
  }, 120_000);
});
