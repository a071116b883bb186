import http2 from "node:http2";

/** The SETTINGS_MAX_CONCURRENT_STREAMS the HTTP/2 server at `baseUrl` tells a new connection. */
export async function advertisedStreamLimit(baseUrl: string): Promise<number | undefined> {
  const session = http2.connect(baseUrl);
  try {
    const settings = await new Promise<http2.Settings>((resolve, reject) => {
      session.once("remoteSettings", resolve);
      session.once("error", reject);
    });
    return settings.maxConcurrentStreams;
  } finally {
    session.destroy();
  }
}
