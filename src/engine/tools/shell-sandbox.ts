import { spawnSync } from "node:child_process";
import { readdir, readlink } from "node:fs/promises";
import { join, relative, resolve, sep } from "node:path";
import { type EngineLookups, LookupUnanswered, lookUp, unansweredWhy } from "./host-lookups.js";
import { ToolError } from "./tool.js";

/**
 * How `shell.exec` commands are isolated (GetRuntime shows it):
 * - "bubblewrap": each command runs under `bwrap` in its own user, PID,
 *   IPC, UTS and mount namespaces: the host file system read-only, only the
 *   workspace (seen at /workspace, its working directory and HOME) and a
 *   private /tmp writable, a fresh /proc that shows only
 *   the sandbox's processes, an empty environment but PATH/HOME/LANG. When
 *   the sandbox's first process dies, the kernel kills every process of its
 *   PID namespace, so a command that detaches with `setsid` dies on cancel.
 *   The network is shared (package installs, git). The host paths the
 *   operator marks private (`hiddenPaths`: the runtime's secrets file,
 *   token, TLS key, data directory) and every workspace root (the
 *   Runtime's, RunRequest.workspaceRootDirs) are covered by empty ones,
 *   inside the workspace too, so a command cannot read host secrets, other
 *   workers' transcripts or other workers' workspaces through the
 *   read-only host view. A worker's mounts are bound at /mounts/<name>
 *   (read-only unless writable), the private paths inside them covered too.
 * - "none": no isolation, chosen explicitly by the operator
 *   (`--allow-unsandboxed-shell`); see the limits in shell-tool.ts.
 * - "refused": no sandbox is available and the operator did not opt out:
 *   `shell.exec` is not offered and `run_command` refuses.
 */
export type ShellSandboxMode = "bubblewrap" | "none" | "refused";

/** Options that choose the mode (OpenAIBackendOptions). */
export interface ShellSandboxOptions {
  /** Force a mode instead of detecting bubblewrap ("bubblewrap" is refused where bwrap cannot run: {@link ShellSandboxError}). */
  shellSandbox?: "bubblewrap" | "none";
  /** Run commands without a sandbox when none is available (or when "none" is forced). */
  allowUnsandboxedShell?: boolean;
  /**
   * Host files and directories sandboxed commands must not see: the
   * runtime's secrets file, bearer token, TLS key and data directory (the
   * CLI passes the ones its flags name). Each is covered inside the sandbox
   * (a directory by an empty tmpfs, a file by /dev/null); one that does not
   * exist when a command starts is skipped. Each is also located once at
   * start-up and that location covered too (hidden-paths.ts), so deleting a
   * link on the way cannot uncover it. Without a sandbox commands see
   * them. The file tools refuse those inside a worker's workspace, and a
   * workspace inside one of them under its root fails the run
   * WORKSPACE_DENIED (workspace.ts, PrivatePaths).
   */
  hiddenPaths?: readonly string[];
}

/**
 * Thrown when building a backend that forces the bubblewrap sandbox on a
 * host where bwrap cannot run: found then, by the embedder, instead of by
 * the model as bwrap's own ENOENT on its first command.
 */
export class ShellSandboxError extends Error {
  override readonly name = "ShellSandboxError";
}

/** The mode for these options: bubblewrap where it works, else "none" only when allowed. */
export function resolveShellSandbox(options: ShellSandboxOptions): ShellSandboxMode {
  if (options.shellSandbox === "bubblewrap" && !bubblewrapWorks()) {
    throw new ShellSandboxError(
      'shellSandbox "bubblewrap" was asked for, but bwrap cannot run here (not on the PATH, or not allowed to create namespaces): install bubblewrap or leave shellSandbox unset',
    );
  }
  const wanted = options.shellSandbox ?? (bubblewrapWorks() ? "bubblewrap" : "none");
  if (wanted === "none" && !options.allowUnsandboxedShell) return "refused";
  return wanted;
}

let bubblewrapChecked: boolean | undefined;

/** Whether `bwrap` exists and may create the namespaces it needs here (checked once per process). */
export function bubblewrapWorks(): boolean {
  if (bubblewrapChecked === undefined) {
    const probe = spawnSync("bwrap", [...namespaceArgs(), "--ro-bind", "/", "/", "--proc", "/proc", "--dev", "/dev", "true"], {
      stdio: "ignore",
      timeout: 5_000,
    });
    bubblewrapChecked = probe.status === 0;
  }
  return bubblewrapChecked;
}

/** The PATH of a sandboxed command: the host's usual program directories, seen read-only. */
export const SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin";

/** Where a sandboxed command sees its workspace (its working directory and HOME), whatever its host path. */
export const SANDBOX_WORKSPACE = "/workspace";

/** Top-level host entries the sandbox makes itself, or that {@link SANDBOX_WORKSPACE} replaces. */
const OWN_TOP_LEVEL = new Set(["proc", "dev", "tmp", SANDBOX_WORKSPACE.slice(1)]);

/** Where a sandboxed command sees the worker's mounts: /mounts/<name> (MountSpec in worker.proto), as the file tools do. */
export const SANDBOX_MOUNTS = "/mounts";

/** One of a worker's mounts, for its sandbox. */
export interface SandboxMount {
  /** Seen at /mounts/<name>. */
  name: string;
  /** Real host path of the mount's directory. */
  root: string;
  /** Bound writable; else read-only. */
  writable: boolean;
}

/**
 * The bwrap arguments that rebuild the host's root read-only from its
 * top-level entries (each bound read-only, a symlink such as /bin -> usr/bin
 * made again). Binding "/" itself would leave no place to make
 * {@link SANDBOX_WORKSPACE} where the host has none: the sandbox's own root
 * is a tmpfs, so it can, and it is made read-only once everything is mounted.
 * The entries are asked at once through the engine's lookups (`host`),
 * each under itself, by `deadline`: one whose own file system does not
 * answer in time (a hung network mount at /mnt) is left out, unseen by the
 * command, rather than hang the command or bwrap's bind of it; when the
 * host refuses lookups (too many unanswered) the command does not run.
 */
export async function hostRootArgs(withMounts: boolean, host: EngineLookups, deadline: number): Promise<string[]> {
  // A host /mounts is left out when the worker's mounts are there instead.
  const names = (await readdir("/")).sort().filter((name) => !OWN_TOP_LEVEL.has(name) && !(withMounts && name === SANDBOX_MOUNTS.slice(1)));
  const entries = await Promise.all(
    names.map(async (name) => {
      const path = `/${name}`;
      const info = await lookUp(host, path, (fs) => fs.lstat(path), deadline).catch((error: unknown) => {
        if (error instanceof LookupUnanswered && (error.outcome.kind === "host_full" || error.outcome.kind === "no_time")) {
          const why = unansweredWhy(error.outcome, "the host's file systems", host.timeoutMs);
          throw new ToolError(`cannot run the command: ${why}; try again once they answer`);
        }
        return undefined;
      });
      if (!info) return [];
      return info.isSymbolicLink() ? ["--symlink", await readlink(path), path] : ["--ro-bind", path, path];
    }),
  );
  return entries.flat();
}

/** The mounts of one command's sandbox, resolved as it starts ({@link sandboxMounts}). */
export interface SandboxMounts {
  /** The host's root, rebuilt read-only ({@link hostRootArgs}). */
  root: string[];
  /** Covers over the private paths at their host paths, the workspace's own host path among them. */
  hidden: string[];
  /** Covers over the private paths inside the workspace, at their /workspace paths, their parents pinned. */
  insideWorkspace: string[];
  /** Real host paths of the private paths covered, to keep them out of bwrap's own errors ({@link hideHostPaths}). */
  privatePaths: string[];
  /** The worker's mounts bound at /mounts/<name>, then the private paths inside them covered. */
  workerMounts: string[];
  /** The mounts, for {@link hideHostPaths}. */
  mounts: readonly SandboxMount[];
}

/**
 * The mounts that keep `hiddenPaths` out of a sandbox running in
 * `workspace` (a real path), resolved now: a path may be created after
 * start-up (the data directory) or be reached through a symlink; one that
 * does not exist is skipped, "/" is never covered, and paths under /tmp
 * are hidden by the sandbox's private /tmp already. A directory is covered
 * by an empty tmpfs, a file by /dev/null.
 *
 * A private path inside the workspace is covered again at its /workspace
 * path after the workspace's bind, which would re-expose it otherwise; and
 * each of its parents inside the workspace is bound onto itself (still
 * writable), because a mount point cannot be renamed: a command that
 * moved a parent would otherwise take the path out of where the operator
 * named it, and the next command would see it uncovered.
 *
 * Each path, and each mount, is asked through the engine's lookups
 * (`host`) under itself, all by one deadline, the operator's timeout: one
 * whose file system does not answer in time cannot be covered or bound, so
 * the command does not run (a ToolError saying so, no host path), rather
 * than hang or run uncovered.
 */
export async function sandboxMounts(
  workspace: string,
  hiddenPaths: readonly string[],
  host: EngineLookups,
  mounts: readonly SandboxMount[] = [],
): Promise<SandboxMounts> {
  const deadline = Date.now() + host.timeoutMs;
  const hidden: string[] = [];
  const privatePaths: string[] = [];
  const found: { real: string; directory: boolean }[] = [];
  for (const path of [...hiddenPaths, workspace]) {
    const fileSystem = path === workspace ? "the workspace's file system" : "the file system of a path this runtime keeps private";
    const located = await locateOnHost(resolve(path), fileSystem, host, deadline);
    if (located === undefined) continue;
    const { real, directory } = located;
    if (real !== workspace) privatePaths.push(real);
    found.push(located);
    if (real !== "/tmp" && !real.startsWith("/tmp/")) hidden.push(...cover(real, directory));
  }
  // bwrap would hang binding a mount whose file system does not answer: each is asked first, as the workspace is.
  for (const mount of mounts) await locateOnHost(mount.root, `the mount ${SANDBOX_MOUNTS}/${mount.name}'s file system`, host, deadline);
  const insideOf = (dir: string) =>
    found.filter(({ real }) => real.startsWith(dir + sep)).map(({ real, directory }) => ({ path: relative(dir, real), directory }));
  // Each mount bound where the tools see it, read-only unless writable; private paths inside it covered again, as in the workspace.
  const workerMounts = mounts.flatMap((mount) => {
    const at = `${SANDBOX_MOUNTS}/${mount.name}`;
    const bind = mount.writable ? "--bind" : "--ro-bind";
    return [bind, mount.root, at, ...insideArgs(mount.root, at, insideOf(mount.root), bind)];
  });
  return {
    // Its own deadline, not what the lookups above left: a slow but healthy /usr asked with a few ms to spare came
    // back late and was left out, and the command then failed "not found" with nothing saying why.
    root: await hostRootArgs(mounts.length > 0, host, Date.now() + host.timeoutMs),
    hidden,
    insideWorkspace: insideArgs(workspace, SANDBOX_WORKSPACE, insideOf(workspace), "--bind"),
    privatePaths,
    workerMounts,
    mounts,
  };
}

/**
 * Where a path the sandbox covers (or binds: the workspace, a mount; or an
 * unsandboxed command starts in) really is, and whether it is a directory, asked under the path by `deadline`;
 * undefined when it is missing, or is "/". A ToolError naming `fileSystem`
 * when not had in time.
 */
export async function locateOnHost(
  path: string,
  fileSystem: string,
  host: EngineLookups,
  deadline: number,
): Promise<{ real: string; directory: boolean } | undefined> {
  try {
    const real = await lookUp(host, path, (fs) => fs.realpath(path), deadline);
    if (real === "/") return undefined;
    const info = await lookUp(host, path, (fs) => fs.stat(real), deadline);
    return { real, directory: info.isDirectory() };
  } catch (error) {
    if (!(error instanceof LookupUnanswered)) return undefined;
    throw new ToolError(`cannot run the command: ${unansweredWhy(error.outcome, fileSystem, host.timeoutMs)}; try again once it answers`);
  }
}

/**
 * A sandboxed command's output with bwrap's own error lines ("bwrap: Can't
 * find source path ...", written when it cannot set up the sandbox, before
 * the command runs) told as the command would see them: the workspace's
 * host path as {@link SANDBOX_WORKSPACE}, a private path as "(a private
 * path)", bwrap's staging roots `/newroot` and `/oldroot` dropped. The output goes to the
 * model, which must learn neither the host's layout nor where the runtime
 * keeps its data. Other lines are the command's and are left as they are.
 */
export function hideHostPaths(output: string, workspace: string, mounts: SandboxMounts): string {
  if (!output.includes("bwrap: ")) return output;
  const privatePaths = [...mounts.privatePaths].sort((a, b) => b.length - a.length);
  const hide = (line: string): string => {
    let text = line;
    for (const staging of ["/newroot", "/oldroot"]) text = replacePath(text.replaceAll(`${staging}/`, "/"), staging, "/");
    text = replacePath(text, workspace, SANDBOX_WORKSPACE);
    // Before the private paths: a mount lies under a root, which is one.
    for (const mount of mounts.mounts) text = replacePath(text, mount.root, `${SANDBOX_MOUNTS}/${mount.name}`);
    for (const path of privatePaths) text = replacePath(text, path, "(a private path)");
    return text;
  };
  return output
    .split("\n")
    .map((line) => (line.startsWith("bwrap: ") ? hide(line) : line))
    .join("\n");
}

/**
 * Whether a sandboxed command's output is only bwrap's own error lines: it
 * could not set the sandbox up, so the command never ran (bwrap then exits
 * 1). The caller tells the model why in plain words where it can (a
 * workspace deleted mid-run) instead of bwrap's.
 */
export function sandboxSetupFailed(output: string): boolean {
  const lines = output.split("\n").filter((line) => line !== "");
  return lines.length > 0 && lines.every((line) => line.startsWith("bwrap: "));
}

/** `text` with each whole occurrence of `path` (not a longer name it begins) replaced by `by`. */
function replacePath(text: string, path: string, by: string): string {
  const escaped = path.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  return text.replace(new RegExp(`${escaped}(?![^/\\s:'"])`, "g"), by);
}

/**
 * Pins, then covers, for the private paths inside a bound directory
 * (`hostDir`, seen at `sandboxDir`; paths relative to it); one inside
 * another is covered by it. Parents are pinned with the directory's own
 * `bind`, so a read-only mount's stay read-only.
 */
function insideArgs(
  hostDir: string,
  sandboxDir: string,
  inside: readonly { path: string; directory: boolean }[],
  bind: "--bind" | "--ro-bind",
): string[] {
  const outermost = inside.filter(({ path }) => !inside.some((other) => path.startsWith(other.path + sep)));
  const parents = new Set<string>();
  for (const { path } of outermost) {
    const segments = path.split(sep);
    for (let i = 1; i < segments.length; i++) parents.add(segments.slice(0, i).join(sep));
  }
  const pins = [...parents].sort().flatMap((parent) => [bind, join(hostDir, parent), join(sandboxDir, parent)]);
  return [...pins, ...outermost.flatMap(({ path, directory }) => cover(join(sandboxDir, path), directory))];
}

function cover(path: string, directory: boolean): string[] {
  return directory ? ["--tmpfs", path] : ["--ro-bind", "/dev/null", path];
}

/**
 * The command line that runs `argv` in a sandbox whose only writable place
 * is the workspace, seen at {@link SANDBOX_WORKSPACE} (cwd and HOME), so
 * neither the host's layout nor the runtime's and worker's ids reach the
 * model, and transcripts do not depend on where the operator keeps data.
 * The hidden paths are covered before the workspace's bind, so a workspace
 * inside a hidden directory (its root) stays usable, and those inside the
 * workspace after it.
 */
export function sandboxedArgv(argv: readonly string[], workspace: string, mounts: SandboxMounts): string[] {
  return [
    "bwrap",
    ...namespaceArgs(),
    "--die-with-parent",
    "--new-session",
    ...mounts.root,
    "--dev",
    "/dev",
    "--proc",
    "/proc",
    "--tmpfs",
    "/tmp",
    ...mounts.hidden,
    "--bind",
    workspace,
    SANDBOX_WORKSPACE,
    ...mounts.insideWorkspace,
    ...mounts.workerMounts,
    "--remount-ro",
    "/",
    "--chdir",
    SANDBOX_WORKSPACE,
    "--clearenv",
    "--setenv",
    "PATH",
    SANDBOX_PATH,
    "--setenv",
    "HOME",
    SANDBOX_WORKSPACE,
    "--setenv",
    "LANG",
    "C.UTF-8",
    "--",
    ...argv,
  ];
}

/**
 * The namespaces, and no capabilities: run as root, bwrap keeps every
 * capability in the user namespace it makes, which owns the sandbox's
 * mount namespace, so a command could unmount the covers of the hidden
 * paths or remount / writable. A bwrap too old for --cap-drop fails the
 * probe ({@link bubblewrapWorks}), so the shell is refused, never left open.
 */
function namespaceArgs(): string[] {
  return ["--unshare-user", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--cap-drop", "ALL"];
}

/**
 * The environment bwrap itself starts with. It is the sandbox's PID 1, so a
 * command reads it in /proc/1/environ (--clearenv clears only the
 * command's): nothing of the runtime's, only the PATH bwrap is found by.
 */
export function sandboxLauncherEnv(): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? SANDBOX_PATH };
}
