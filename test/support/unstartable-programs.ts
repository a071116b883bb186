import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";

/**
 * A copy of the ELF program at `path` whose dynamic loader (its PT_INTERP path, "/lib64/ld-linux-x86-64.so.2"
 * on x86-64) is renamed to one that does not exist: what a binary built for another system looks like here.
 */
export async function binaryWithMissingLoader(path: string): Promise<Buffer> {
  const binary = await readFile(path);
  const loader = /\/lib[^\0]*\/ld-[^\0]*\0/.exec(binary.toString("latin1"));
  if (!loader) throw new Error(`${path} names no dynamic loader`);
  const missing = "/nonexistent/ld.so\0";
  if (missing.length > loader[0].length) throw new Error(`${path}'s loader path is too short to rename`);
  binary.write(missing, loader.index, "latin1");
  return binary;
}

/**
 * Writes into `bin` one program per reason a program that is there cannot
 * start (the names end in `suffix`), and returns each name with the
 * `cause` a check reports for it (program-start-failure.ts) and the words
 * that say why.
 */
export async function writeUnstartablePrograms(bin: string, suffix: string): Promise<{ program: string; cause: string; why: string }[]> {
  const programs = [
    { program: `plain${suffix}`, cause: "not_executable", why: "is not executable" },
    {
      program: `python${suffix}`,
      cause: "interpreter_missing",
      why: 'its interpreter "/nonexistent/python" (named on its first line) is missing',
    },
    { program: `loader${suffix}`, cause: "loader_missing", why: "the dynamic loader it needs is missing" },
    // glibc's execvp runs such a file with /bin/sh, a shell its author did not choose.
    { program: `noshebang${suffix}`, cause: "no_shebang", why: "it has no #! line and is not a binary" },
  ];
  await writeFile(join(bin, `plain${suffix}`), "#!/bin/sh\necho hi\n", { mode: 0o644 });
  await writeFile(join(bin, `python${suffix}`), "#!/nonexistent/python\nprint(1)\n", { mode: 0o755 });
  await writeFile(join(bin, `loader${suffix}`), await binaryWithMissingLoader("/usr/bin/true"), { mode: 0o755 });
  await writeFile(join(bin, `noshebang${suffix}`), "echo ran under a shell\n", { mode: 0o755 });
  return programs;
}
