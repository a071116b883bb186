import { resolve } from "node:path";
import type { RunMount } from "../../runtime/index.js";
import type { EngineLookups } from "./host-lookups.js";
import type { ToolDefinition } from "./tool.js";
import { ToolError } from "./tool.js";
import type { ShellSandboxMode } from "./shell-sandbox.js";
import { assertNotInsidePrivate, MOUNTS_DIR, resolvePrivatePaths, Workspace, type WorkspaceMount } from "./workspace.js";

/**
 * Opens a run's mounts (RunRequest.mounts) beside its opened workspace: each
 * directory made inside its root's real path as the workspace is
 * (Workspace.openInside: a symlink leading out is refused), never inside a
 * path the runtime keeps private, with the private paths inside it hidden
 * from the file tools. A mount that cannot be opened is a ToolError naming
 * it; the backend fails the run WORKSPACE_DENIED, as for the workspace.
 */
export async function openMounts(
  workspace: Workspace,
  mounts: readonly RunMount[],
  hiddenPaths: readonly string[],
  roots: readonly string[],
  host: EngineLookups,
): Promise<Workspace> {
  const opened: WorkspaceMount[] = [];
  for (const mount of mounts) {
    const what = `the mount ${MOUNTS_DIR}/${mount.name}`;
    if (mount.dir === undefined || mount.rootDir === undefined) {
      throw new ToolError(`${what} is under a root this runtime no longer has`);
    }
    const privatePaths = await resolvePrivatePaths(hiddenPaths, roots, mount.rootDir, host);
    assertNotInsidePrivate(resolve(mount.dir), privatePaths, what);
    const area = await Workspace.openInside(mount.rootDir, mount.dir, host, what);
    assertNotInsidePrivate(area.root, privatePaths, what);
    opened.push({ name: mount.name, writable: mount.writable, area: area.withPrivatePaths(privatePaths).asMount(mount.name) });
  }
  return workspace.withMounts(opened);
}

/**
 * The run's tools with the worker's mounts told in their descriptions, so
 * the model knows where they are and which it may change. run_command is
 * told only under the bubblewrap sandbox, the one place commands see
 * /mounts; unsandboxed (the operator's explicit choice) commands run on the
 * host, where mounts are not remapped. No mounts: the tools as they are.
 */
export function describeMounts(tools: readonly ToolDefinition[], mounts: readonly RunMount[], sandbox: ShellSandboxMode): ToolDefinition[] {
  if (mounts.length === 0) return [...tools];
  const list = mounts.map((m) => `${MOUNTS_DIR}/${m.name} (${m.writable ? "writable" : "read-only"})`).join(", ");
  return tools.map((tool) => {
    if (tool.capability === "shell.exec") {
      return sandbox === "bubblewrap" ? { ...tool, description: `${tool.description} Mounted directories: ${list}.` } : tool;
    }
    return { ...tool, description: `${tool.description} Mounted directories, reached by absolute paths under ${MOUNTS_DIR}: ${list}.` };
  });
}
