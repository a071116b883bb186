import { once } from "node:events";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { afterEach } from "vitest";

/**
 * Plain local HTTP servers that play a provider's far end in transport
 * tests: `serve(handler)` starts one on 127.0.0.1 and answers its chat URL;
 * every server started in a test is closed after it, connections and all.
 */
export function localHttpServers(): {
  serve(handler: http.RequestListener): Promise<string>;
  /** Closes the server started last, so its port refuses connections. */
  closeNewest(): Promise<void>;
} {
  const servers: http.Server[] = [];
  afterEach(async () => {
    for (const server of servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
  return {
    async serve(handler) {
      const server = http.createServer(handler);
      servers.push(server);
      server.listen(0, "127.0.0.1");
      await once(server, "listening");
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat`;
    },
    async closeNewest() {
      const server = servers.pop();
      if (server) await new Promise((resolve) => server.close(resolve));
    },
  };
}
