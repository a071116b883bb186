/**
 * The tool capabilities a Worker can be granted, defined once: the core
 * checks CreateWorker against them, execution backends gate their tools by
 * them. A backend offers a subset (RuntimeCapabilities.tool_capabilities).
 */
export const TOOL_CAPABILITIES = ["fs.read", "fs.write", "shell.exec"] as const;

/** One tool capability. */
export type ToolCapability = (typeof TOOL_CAPABILITIES)[number];

/** Capabilities that may change files, and so need an exclusive workspace lease (shell commands can write too). */
export const WRITE_CAPABILITIES: ReadonlySet<ToolCapability> = new Set<ToolCapability>(["fs.write", "shell.exec"]);

/** Whether `name` is a capability the runtime knows of. */
export function isToolCapability(name: string): name is ToolCapability {
  return (TOOL_CAPABILITIES as readonly string[]).includes(name);
}
