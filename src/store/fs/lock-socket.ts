import { type FileHandle, open, unlink } from "node:fs/promises";
import { createConnection, createServer, type Server } from "node:net";
import path from "node:path";

/** Name of the lock holder's liveness socket inside the data dir. */
export const LOCK_SOCKET = "LOCK.sock";

/** Longest unix socket path accepted everywhere (macOS: 104 bytes with the NUL; Linux: 108). */
const MAX_SOCKET_PATH = 103;

/** How long a connect may take before the holder counts as alive (fail closed). */
const PROBE_TIMEOUT_MS = 2_000;

/**
 * The lock holder listens on a unix socket in the data dir, so that a
 * process which cannot judge its pid can still see that it runs: one in
 * another pid namespace (a second container on the same volume), where
 * the holder's pid means nothing, or even equals its own (both pid 1).
 * A socket answers only while its process lives, whatever the namespace.
 * Undefined when no socket can be made (a path too long for one outside
 * Linux, a file system without sockets): then only the pid rules apply.
 */
export async function listenLiveness(file: string): Promise<Server | undefined> {
  const address = await socketAddress(file);
  if (!address) return undefined;
  // A dead holder's socket: this process holds the lock now.
  await unlink(file).catch(() => undefined);
  const server = createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(address.path, () => resolve());
    });
  } catch {
    await address.dir?.close();
    return undefined;
  }
  server.unref();
  // libuv unlinks the path it bound when the server closes: a /proc/self/fd path must keep meaning this dir till then.
  if (address.dir) openDirs.set(server, address.dir);
  return server;
}

/** Stops listening and removes the socket file. */
export async function closeLiveness(server: Server, file: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await unlink(file).catch(() => undefined);
  await openDirs.get(server)?.close();
  openDirs.delete(server);
}

/** The data dir held open for a server bound through /proc/self/fd (see {@link socketAddress}). */
const openDirs = new WeakMap<Server, FileHandle>();

/**
 * The path to bind or connect to for `file`: itself when short enough for
 * a unix socket address, else (Linux) the same file reached through an open
 * descriptor of its directory, `/proc/self/fd/N/LOCK.sock`, which the kernel
 * resolves to the real directory. A data dir deep in a volume mount often
 * has a path over the 103 bytes an address holds, and went without the
 * liveness socket. `dir`, when set, is the caller's to close once done.
 */
async function socketAddress(file: string): Promise<{ path: string; dir?: FileHandle } | undefined> {
  if (Buffer.byteLength(file) <= MAX_SOCKET_PATH) return { path: file };
  if (process.platform !== "linux") return undefined;
  const dir = await open(path.dirname(file), "r").catch(() => undefined);
  if (!dir) return undefined;
  const short = `/proc/self/fd/${dir.fd}/${path.basename(file)}`;
  if (Buffer.byteLength(short) > MAX_SOCKET_PATH) {
    await dir.close();
    return undefined;
  }
  return { path: short, dir };
}

/** True when a process listens on the socket: the lock's holder runs. */
export async function holderAnswers(file: string): Promise<boolean> {
  const address = await socketAddress(file);
  if (!address) return false;
  try {
    return await answers(address.path);
  } finally {
    await address.dir?.close();
  }
}

function answers(address: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection(address);
    const done = (alive: boolean): void => {
      clearTimeout(timer);
      socket.destroy();
      resolve(alive);
    };
    const timer = setTimeout(() => done(true), PROBE_TIMEOUT_MS);
    socket.once("connect", () => done(true));
    // ENOENT (no socket), ECONNREFUSED (its process died), anything else: no answer.
    socket.once("error", () => done(false));
  });
}
