import type { ToolCapability } from "../../runtime/index.js";
import type { EngineLookups } from "./host-lookups.js";
import type { ShellSandboxMode } from "./shell-sandbox.js";
import type { ToolLimits } from "./tool-limits.js";
import type { Workspace } from "./workspace.js";

/** A capability that gates a tool, as granted to a worker at create time (defined by the core). */
export type { ToolCapability };

/** One builtin tool: its schema for the model and its implementation. */
export interface ToolDefinition {
  readonly name: string;
  readonly capability: ToolCapability;
  readonly description: string;
  /** JSON schema of the arguments object. */
  readonly parameters: Record<string, unknown>;
  run(args: ToolArgs, context: ToolContext): Promise<ToolOutput>;
}

/** What a tool needs while it runs. */
export interface ToolContext {
  /** The worker's workspace; undefined when the worker has none. */
  readonly workspace: Workspace | undefined;
  readonly limits: ToolLimits;
  /** The run's signal: aborting it must stop the tool promptly. */
  readonly signal: AbortSignal;
  /** How commands are isolated (shell-sandbox.ts); unset = "none" (direct tool tests). */
  readonly shellSandbox?: ShellSandboxMode;
  /** Host paths covered inside the sandbox (ShellSandboxOptions.hiddenPaths). */
  readonly shellHiddenPaths?: readonly string[];
  /** A config bundle's shell policy; undefined = commands unrestricted (builtin profiles). */
  readonly shellPolicy?: ShellPolicy;
  /**
   * How the tools ask the host's file system: the backend's lookups, shared
   * by its runs, so a hung mount is asked one lookup at a time, within the
   * runtime's timeout, under one bound (the program check, the sandbox's
   * private paths, mounts and top-level entries; the workspace has them
   * too, from when the run opened it).
   */
  readonly hostLookups: EngineLookups;
}

/** Programs a command may start with (see ShellPolicy in profile.proto). */
export interface ShellPolicy {
  readonly allowedPrograms: readonly string[];
}

/** Parsed tool arguments. */
export type ToolArgs = Readonly<Record<string, unknown>>;

/** What a tool returns to the model. */
export interface ToolOutput {
  output: string;
  /**
   * The tool's own word on what it left out ("[search stopped ...]"), one
   * line each, put after `output` and kept whole by the tool output bound,
   * which cuts `output` to make room for them (executeToolCall): a cut from
   * the end would otherwise remove them, and the model would not learn why
   * the result is short.
   */
  notes?: readonly string[];
  isError?: boolean;
  truncated?: boolean;
}

/**
 * A failure the model should read and react to (bad path, missing file,
 * refused escape). Its message becomes the tool result, so it must never
 * hold host paths outside the workspace or secrets.
 */
export class ToolError extends Error {
  override readonly name = "ToolError";
}

/** The worker's workspace, or a tool error saying `what` needs one (e.g. "file tools"). */
export function requireWorkspace(context: ToolContext, what: string): Workspace {
  if (!context.workspace) throw new ToolError(`this worker has no workspace, so ${what} are unavailable`);
  return context.workspace;
}

/** Reads a required string argument. */
export function stringArg(args: ToolArgs, name: string): string {
  const value = args[name];
  if (typeof value !== "string") throw new ToolError(`argument "${name}" must be a string`);
  return value;
}

/** Reads an optional string argument. */
export function optionalStringArg(args: ToolArgs, name: string): string | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "string") throw new ToolError(`argument "${name}" must be a string`);
  return value;
}

/** Reads an optional non-negative integer argument. */
export function optionalIntArg(args: ToolArgs, name: string): number | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "number" || !Number.isInteger(value) || value < 0) {
    throw new ToolError(`argument "${name}" must be a non-negative integer`);
  }
  return value;
}

/** Reads an optional boolean argument. */
export function optionalBoolArg(args: ToolArgs, name: string): boolean | undefined {
  const value = args[name];
  if (value === undefined || value === null) return undefined;
  if (typeof value !== "boolean") throw new ToolError(`argument "${name}" must be a boolean`);
  return value;
}
