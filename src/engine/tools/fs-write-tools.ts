import { dirname } from "node:path";
import { assertWritableTarget, replaceFile, withRegularFile } from "./regular-file.js";
import { stringArg, requireWorkspace, ToolError, type ToolContext, type ToolDefinition } from "./tool.js";

/**
 * Tools that change files in the workspace (`fs.write`). Every file system
 * call they make once a path is resolved is asked through
 * Workspace.fileCall, within the runtime's timeout; a write not done by
 * then is not made later (replaceFile).
 */

function checkSize(content: string | Buffer, context: ToolContext): void {
  const bytes = typeof content === "string" ? Buffer.byteLength(content, "utf8") : content.length;
  if (bytes > context.limits.maxWriteBytes) {
    throw new ToolError(`refused: content is ${bytes} bytes; the limit is ${context.limits.maxWriteBytes}`);
  }
}

/** write_file: creates or replaces a file, creating parent directories. */
export const writeFileTool: ToolDefinition = {
  name: "write_file",
  capability: "fs.write",
  description: "Create or overwrite a text file in the workspace. Parent directories are created.",
  parameters: {
    type: "object",
    properties: {
      path: { type: "string", description: "File path relative to the workspace root." },
      content: { type: "string", description: "The complete new content." },
    },
    required: ["path", "content"],
    additionalProperties: false,
  },
  async run(args, context) {
    const workspace = requireWorkspace(context, "file tools");
    const path = stringArg(args, "path");
    const content = stringArg(args, "content");
    checkSize(content, context);
    const hostPath = await workspace.resolveForWrite(path);
    await workspace.fileCall(hostPath, path, context.signal, async (fs, deadline) => {
      const existing = await assertWritableTarget(fs, hostPath, path);
      await fs.mkdir(dirname(hostPath), { recursive: true });
      await replaceFile(fs, hostPath, content, existing?.mode, context.signal, deadline);
    });
    return { output: `wrote ${Buffer.byteLength(content, "utf8")} bytes to ${workspace.display(hostPath)}` };
  },
};

/**
 * edit_file: replaces one exact, unique occurrence of a text. The edit is
 * made on the file's bytes (old_text and new_text as UTF-8), so a file that
 * is not UTF-8 (Latin-1, a stray invalid byte) keeps every byte outside
 * the edit; decoding it to a string and back would replace them.
 */
export const editFileTool: ToolDefinition = {
  name: "edit_file",
  capability: "fs.write",
  description: "Replace one exact occurrence of old_text with new_text in a workspace file. old_text must occur exactly once.",
  parameters: {
    type: "object",
    properties: {
      path: { type: "string", description: "File path relative to the workspace root." },
      old_text: { type: "string", description: "The exact text to replace; must be unique in the file." },
      new_text: { type: "string", description: "The replacement text." },
    },
    required: ["path", "old_text", "new_text"],
    additionalProperties: false,
  },
  async run(args, context) {
    const workspace = requireWorkspace(context, "file tools");
    const path = stringArg(args, "path");
    const oldText = stringArg(args, "old_text");
    const newText = stringArg(args, "new_text");
    if (oldText === "") throw new ToolError('argument "old_text" must not be empty');
    const hostPath = await workspace.resolveExisting(path, true);
    const { content, info } = await workspace.fileCall(hostPath, path, context.signal, (fs) =>
      withRegularFile(fs, hostPath, path, async ({ handle, info }) => {
        // Refused before reading: a huge file would be read whole only to fail the size check after the edit.
        if (info.size > context.limits.maxWriteBytes) {
          throw new ToolError(
            `refused: ${path} is ${info.size} bytes; edit_file handles files up to ${context.limits.maxWriteBytes} bytes`,
          );
        }
        return { content: await handle.readFile({ signal: context.signal }), info };
      }),
    );
    const needle = Buffer.from(oldText, "utf8");
    const at = content.indexOf(needle);
    let count = 0;
    for (let i = at; i >= 0; i = content.indexOf(needle, i + needle.length)) count++;
    if (count !== 1) {
      throw new ToolError(`old_text occurs ${count} times in ${path}; it must occur exactly once`);
    }
    const updated = Buffer.concat([content.subarray(0, at), Buffer.from(newText, "utf8"), content.subarray(at + needle.length)]);
    checkSize(updated, context);
    await workspace.fileCall(hostPath, path, context.signal, (fs, deadline) =>
      replaceFile(fs, hostPath, updated, info.mode, context.signal, deadline),
    );
    return { output: `edited ${workspace.display(hostPath)}` };
  },
};
