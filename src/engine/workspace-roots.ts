import type { RunRequest } from "../runtime/index.js";

/**
 * The runtime's workspace roots as the Runtime sends them (every root, for
 * the sandbox and the file tools to keep other workers' workspaces
 * private); the worker's own root for a request that names only it.
 */
export function workspaceRoots(request: RunRequest): readonly string[] {
  return request.workspaceRootDirs ?? (request.workspaceRootDir !== undefined ? [request.workspaceRootDir] : []);
}
