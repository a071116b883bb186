/** Reads up to `length` bytes of a file at `offset` (fewer at its end). */
export type ReadAt = (offset: number, length: number) => Promise<Buffer>;

/** ELF's program header type for the path of the program's dynamic loader. */
const PT_INTERP = 3;
/** More program headers than any real binary has, and a loader path longer than PATH_MAX: a damaged file. */
const MAX_PROGRAM_HEADERS = 256;
const MAX_INTERPRETER_BYTES = 4096;

/**
 * The dynamic loader an ELF program names (its PT_INTERP path, as
 * "/lib64/ld-linux-x86-64.so.2"), read from the file's program headers;
 * undefined for a static binary, a file that is not ELF, or one that
 * cannot be read or is damaged. The kernel starts the loader, not the
 * program: a loader that is missing makes exec fail ENOENT for a program
 * that is there (a binary built for another system), which is how the
 * check can say so before any exec. The file is read through `read`
 * (program-files.ts opens it, off the event loop); a read that fails
 * rejects.
 */
export async function elfInterpreter(read: ReadAt): Promise<string | undefined> {
  const header = await read(0, 64);
  if (header.length < 52 || header.readUInt32BE(0) !== 0x7f454c46) return undefined;
  const wide = header[4] === 2;
  const little = header[5] === 1;
  const u16 = (b: Buffer, at: number): number => (little ? b.readUInt16LE(at) : b.readUInt16BE(at));
  const u32 = (b: Buffer, at: number): number => (little ? b.readUInt32LE(at) : b.readUInt32BE(at));
  const word = (b: Buffer, at: number): number => (wide ? Number(little ? b.readBigUInt64LE(at) : b.readBigUInt64BE(at)) : u32(b, at));
  if (wide && header.length < 64) return undefined;
  const tableOffset = word(header, wide ? 0x20 : 0x1c);
  const entrySize = u16(header, wide ? 0x36 : 0x2a);
  const entries = u16(header, wide ? 0x38 : 0x2c);
  if (entries > MAX_PROGRAM_HEADERS || entrySize < (wide ? 56 : 32)) return undefined;
  const table = await read(tableOffset, entries * entrySize);
  for (let i = 0; (i + 1) * entrySize <= table.length; i++) {
    const entry = table.subarray(i * entrySize, (i + 1) * entrySize);
    if (u32(entry, 0) !== PT_INTERP) continue;
    const size = word(entry, wide ? 0x20 : 0x10);
    if (size === 0 || size > MAX_INTERPRETER_BYTES) return undefined;
    const name = await read(word(entry, wide ? 0x08 : 0x04), size);
    const end = name.indexOf(0);
    return name.subarray(0, end < 0 ? name.length : end).toString("utf8") || undefined;
  }
  return undefined;
}
