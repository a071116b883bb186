import net from "node:net";
import type { AddressInfo } from "node:net";

/** A TCP proxy whose connections a test can cut, to drop a browser's connection for real. */
export interface CuttableProxy {
  /** "http://127.0.0.1:PORT/" */
  readonly url: string;
  /** Destroys every open connection and refuses new ones until {@link restore}. */
  cut(): void;
  /**
   * Stops forwarding on every open connection without closing it, as a
   * client that vanished without a FIN (a NAT that forgot the flow, a machine
   * switched off): what the target sends is read and dropped (so the proxy
   * still sees the target close), the client's side is no longer read.
   */
  freeze(): void;
  /** How many connections the target closed (rather than the client or the proxy). */
  readonly closedByTarget: number;
  restore(): void;
  close(): Promise<void>;
}

/** Starts a proxy on 127.0.0.1 port 0 forwarding to `target` ("host:port"). */
export async function startCuttableProxy(target: string): Promise<CuttableProxy> {
  const [host, port] = [target.slice(0, target.lastIndexOf(":")), Number(target.slice(target.lastIndexOf(":") + 1))];
  const sockets = new Set<net.Socket>();
  const pairs = new Set<[net.Socket, net.Socket]>();
  let refusing = false;
  let closedByTarget = 0;
  const track = (socket: net.Socket): void => {
    sockets.add(socket);
    socket.once("close", () => sockets.delete(socket));
    socket.on("error", () => socket.destroy());
  };
  const server = net.createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(port, host);
    track(client);
    track(upstream);
    const pair: [net.Socket, net.Socket] = [client, upstream];
    pairs.add(pair);
    let closedHere = false;
    client.once("close", () => {
      closedHere = true;
      pairs.delete(pair);
      upstream.destroy();
    });
    upstream.once("close", () => {
      if (!closedHere && !refusing) closedByTarget++;
      client.destroy();
    });
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/`,
    cut() {
      refusing = true;
      for (const socket of sockets) socket.destroy();
    },
    freeze() {
      for (const [client, upstream] of pairs) {
        client.unpipe(upstream);
        upstream.unpipe(client);
        client.pause();
        // Unpiping paused it; a data listener alone would not restart the flow.
        upstream.on("data", () => {});
        upstream.resume();
      }
    },
    get closedByTarget() {
      return closedByTarget;
    },
    restore() {
      refusing = false;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
