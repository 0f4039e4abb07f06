// Test harness: real TcpTransports on 127.0.0.1 with an address book,
// collected logs and received messages, and a bounded wait.
import net from 'node:net';
import type { Message } from '../../../src/raft/core/types.js';
import { TcpTransport, type TransportLogger, type TransportOptions } from '../../../src/raft/transport/tcp-transport.js';

export interface LogLine {
  level: 'warn' | 'info' | 'debug';
  message: string;
  fields: Record<string, unknown>;
}

export interface Node {
  id: string;
  transport: TcpTransport;
  received: Array<{ group: string; msg: Message }>;
  unreachable: string[];
  logs: LogLine[];
}

/** Starts and tracks transports; `closeAll` in afterEach releases every socket. */
export class Cluster {
  readonly addresses = new Map<string, string>();
  private readonly nodes: Node[] = [];

  async start(id: string, options: Partial<TransportOptions> = {}): Promise<Node> {
    const logs: LogLine[] = [];
    const logger: TransportLogger = {
      warn: (fields, message) => logs.push({ level: 'warn', message, fields }),
      info: (fields, message) => logs.push({ level: 'info', message, fields }),
      debug: (fields, message) => logs.push({ level: 'debug', message, fields }),
    };
    const node: Node = { id, transport: undefined as unknown as TcpTransport, received: [], unreachable: [], logs };
    node.transport = new TcpTransport({
      nodeId: id,
      listen: { host: '127.0.0.1', port: 0 },
      resolve: (peer) => this.addresses.get(peer),
      onMessage: (group, msg) => node.received.push({ group, msg }),
      onUnreachable: (peer) => node.unreachable.push(peer),
      logger,
      reconnectBackoffMs: { min: 10, max: 100 },
      ...options,
    });
    await node.transport.start();
    this.addresses.set(id, `127.0.0.1:${node.transport.port}`);
    this.nodes.push(node);
    return node;
  }

  async closeAll(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.transport.close()));
    this.nodes.length = 0;
  }
}

/** Polls `condition` until it holds; fails naming what was awaited and for how long. */
export async function waitUntil(what: string, condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = Date.now();
  while (!condition()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** Lets the event loop run for `ms` (for "nothing happens" checks, not for waiting on something). */
export function idle(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A 127.0.0.1 port that nothing listens on (bound, then released). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** An append message whose `index` and entry carry a sequence number. */
export function seqMessage(from: string, to: string, seq: number, dataBytes = 8): Message {
  const data = new Uint8Array(dataBytes);
  new DataView(data.buffer).setUint32(0, seq);
  return { type: 'app', from, to, term: 1, index: seq, commit: seq, entries: [{ term: 1, index: seq, type: 0, data }] };
}

export function seqOf(msg: Message): number {
  const data = msg.entries![0]!.data;
  const fromData = new DataView(data.buffer, data.byteOffset, data.length).getUint32(0);
  if (fromData !== msg.index) throw new Error(`entry data ${fromData} disagrees with index ${msg.index}`);
  return fromData;
}
