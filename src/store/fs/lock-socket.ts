import { createConnection, createServer, type Server } from "node:net";
import { unlink } from "node:fs/promises";

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
 * Undefined when no socket can be made (a path too long for one, a file
 * system without sockets): then only the pid rules apply.
 */
export async function listenLiveness(file: string): Promise<Server | undefined> {
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH) return undefined;
  // A dead holder's socket: this process holds the lock now.
  await unlink(file).catch(() => undefined);
  const server = createServer((socket) => socket.destroy());
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(file, () => resolve());
    });
  } catch {
    return undefined;
  }
  server.unref();
  return server;
}

/** Stops listening and removes the socket file. */
export async function closeLiveness(server: Server, file: string): Promise<void> {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await unlink(file).catch(() => undefined);
}

/** True when a process listens on the socket: the lock's holder runs. */
export function holderAnswers(file: string): Promise<boolean> {
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH) return Promise.resolve(false);
  return new Promise((resolve) => {
    const socket = createConnection(file);
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
