import { createSocket, type Socket } from "node:dgram";
import { once } from "node:events";

/** A record the fake server answers: A (an IPv4 address) or SRV (a target and port). */
export type FakeDnsRecord = { type: "A"; address: string } | { type: "SRV"; target: string; port: number };

/**
 * A real DNS server over UDP on 127.0.0.1, answering A and SRV queries from
 * a table the test changes and NXDOMAIN for any other name, so code that
 * asks DNS through Node's resolver (c-ares) can be tested without the
 * network. `queries` lists the names asked, in order.
 */
export class FakeDnsServer {
  readonly records = new Map<string, FakeDnsRecord[]>();
  readonly queries: string[] = [];
  private constructor(private readonly socket: Socket) {}

  static async start(): Promise<FakeDnsServer> {
    const socket = createSocket("udp4");
    const server = new FakeDnsServer(socket);
    socket.on("message", (query, from) => socket.send(server.answer(query), from.port, from.address));
    socket.bind(0, "127.0.0.1");
    await once(socket, "listening");
    return server;
  }

  /** `127.0.0.1:PORT`, for `Resolver.setServers`. */
  get address(): string {
    return `127.0.0.1:${this.socket.address().port}`;
  }

  close(): void {
    this.socket.close();
  }

  private answer(query: Buffer): Buffer {
    let offset = 12;
    const labels: string[] = [];
    for (let length = query[offset] ?? 0; length > 0; length = query[offset] ?? 0) {
      labels.push(query.toString("latin1", offset + 1, offset + 1 + length));
      offset += 1 + length;
    }
    const questionEnd = offset + 5; // the root label, QTYPE, QCLASS
    const name = labels.join(".").toLowerCase();
    const type = query.readUInt16BE(offset + 1) === 33 ? "SRV" : query.readUInt16BE(offset + 1) === 1 ? "A" : "other";
    this.queries.push(name);
    const known = this.records.get(name);
    const answers = (known ?? []).filter((record) => record.type === type).map(encodeAnswer);
    const header = Buffer.alloc(12);
    query.copy(header, 0, 0, 2); // the id
    header.writeUInt16BE(known ? 0x8180 : 0x8183, 2); // a response, recursion available; NXDOMAIN for unknown names
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    return Buffer.concat([header, query.subarray(12, questionEnd), ...answers]);
  }
}

/** One answer for the question's name (a pointer to it at offset 12), TTL 1 s. */
function encodeAnswer(record: FakeDnsRecord): Buffer {
  const data =
    record.type === "A"
      ? Buffer.from(record.address.split(".").map(Number))
      : Buffer.concat([Buffer.from([0, 0, 0, 0, record.port >> 8, record.port & 0xff]), encodeName(record.target)]);
  const head = Buffer.alloc(12);
  head.writeUInt16BE(0xc00c, 0);
  head.writeUInt16BE(record.type === "A" ? 1 : 33, 2);
  head.writeUInt16BE(1, 4); // IN
  head.writeUInt32BE(1, 6);
  head.writeUInt16BE(data.length, 10);
  return Buffer.concat([head, data]);
}

function encodeName(name: string): Buffer {
  const parts = name.split(".").map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label, "latin1")]));
  return Buffer.concat([...parts, Buffer.from([0])]);
}
