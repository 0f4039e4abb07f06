// Multi-Raft message transport: one TCP connection per ordered pair of
// processes, carrying the messages of every Raft group between them.
//
// Direction (as in etcd): the sender dials, the receiver accepts. A process
// therefore has up to one outbound connection per peer (its messages to that
// peer) and up to one inbound connection per peer (that peer's messages to
// it). The dialer opens with a hello naming itself and the process it meant
// to reach; the acceptor answers with an ack, or with a reject and a reason
// when it is not that process (an address reused by another container) or
// speaks another protocol version.
//
// Writes are coalesced: `send` encodes the message into the peer's queue, and
// the queue is flushed once per event-loop turn (setImmediate) as a few large
// frames in one socket write, or earlier when a frame's worth has piled up.
// While the socket's own buffer is full, nothing more is handed to it; the
// queue grows up to maxQueuedBytesPerPeer and further messages are dropped.
//
// Delivery is at most once, in order per connection:
// - a message queued while no connection is open is sent after the next
//   successful connect; if that connect fails, the queue is dropped (so a
//   peer that is down does not accumulate stale traffic);
// - frames already handed to a socket that then breaks are lost, never
//   re-sent, so the transport itself never duplicates a message.
// Raft tolerates both loss and reordering across reconnects; onUnreachable
// tells the host so it can call reportUnreachable on the affected groups.
//
// Liveness: the dialer sends a ping every pingIntervalMs and the acceptor
// answers with a pong. A connection with no inbound frame for
// deadPeerTimeoutMs (a paused process, a silent network partition) is
// closed on both sides. TCP keepalive is also on, as a backstop.
import net from 'node:net';
import type { Message } from '../core/types.js';
import {
  CodecError,
  DEFAULT_MAX_FRAME_BYTES,
  FrameKind,
  PING_FRAME,
  PONG_FRAME,
  PROTOCOL_VERSION,
  decodeBatchBody,
  decodeHello,
  decodeHelloAck,
  decodeHelloReject,
  encodeHello,
  encodeHelloAck,
  encodeHelloReject,
  measureEnvelope,
  type Envelope,
} from './codec.js';
import { FrameReader } from './frame-reader.js';
import { SendQueue } from './send-queue.js';

/** The subset of a pino logger the transport uses. */
export interface TransportLogger {
  warn(fields: Record<string, unknown>, message: string): void;
  info(fields: Record<string, unknown>, message: string): void;
  debug?(fields: Record<string, unknown>, message: string): void;
}

export interface TransportOptions {
  /** This process's id (the id peers use to address it). */
  nodeId: string;
  /** Where to accept connections. Port 0 picks a free port; read it from `port` after start(). */
  listen: { host: string; port: number };
  /** Peer process id → "host:port" (or "[v6]:port"); consulted on every dial, since addresses change. */
  resolve: (peerId: string) => string | undefined;
  /** Called for each received message, in order per connection. Exceptions are logged and counted. */
  onMessage: (group: string, msg: Message) => void;
  /**
   * A connect to the peer failed, its connection was lost, or messages to it
   * are being dropped because its queue is full. Never called synchronously
   * from inside send().
   */
  onUnreachable?: (peerId: string) => void;
  /** Encoded bytes queued per peer before messages are dropped (default 16 MiB). A single message is always admitted into an empty queue. */
  maxQueuedBytesPerPeer?: number;
  /** Largest frame accepted from a peer and sent to one (default 64 MiB). Peers must agree. */
  maxFrameBytes?: number;
  /** Connect + handshake must finish within this (default 3000 ms). Also the acceptor's handshake deadline. */
  dialTimeoutMs?: number;
  /** Delay before redialing after a failure, doubling per consecutive failure (default 50..2000 ms). */
  reconnectBackoffMs?: { min: number; max: number };
  /** Ping period on outbound connections (default 1000 ms). */
  pingIntervalMs?: number;
  /** A connection silent for this long is closed (default 5000 ms). */
  deadPeerTimeoutMs?: number;
  /** Batches are cut into frames of about this size (default 256 KiB). */
  targetFrameBytes?: number;
  /** Stop handing frames to a socket that already buffers this much (default 1 MiB). */
  socketBufferBytes?: number;
  logger?: TransportLogger;
}

export type PeerLinkState = 'idle' | 'connecting' | 'open' | 'backoff';

export interface PeerStats {
  state: PeerLinkState;
  address: string | undefined;
  queuedMessages: number;
  queuedBytes: number;
  /** Bytes handed to the socket that the kernel has not taken yet. */
  socketBufferedBytes: number;
  sentMessages: number;
  droppedMessages: number;
  consecutiveDialFailures: number;
}

export interface TransportStats {
  /** Messages handed to a socket (not necessarily delivered). */
  sentMessages: number;
  sentBytes: number;
  /** Socket writes of batch frames (one write may carry several frames). */
  sentWrites: number;
  receivedMessages: number;
  receivedBytes: number;
  receivedFrames: number;
  /** Sum of the drops below. */
  droppedMessages: number;
  drops: {
    /** The peer's queue was full. */
    queueFull: number;
    /** Queued while disconnected, then the connect failed. */
    dialFailed: number;
    /** The message could not be encoded or is larger than a frame. */
    unencodable: number;
    /** Sent after close(), or still queued at close(). */
    closed: number;
  };
  /** Open outbound plus handshaken inbound connections. */
  connections: number;
  outboundConnections: number;
  inboundConnections: number;
  queuedMessages: number;
  queuedBytes: number;
  dialFailures: number;
  /** Outbound connections that completed their handshake, ever. */
  connectionsOpened: number;
  /** Inbound connections accepted (before their handshake), ever. */
  connectionsAccepted: number;
  /** Open outbound connections that broke. */
  connectionsLost: number;
  /** Connections closed because a peer sent something invalid (bad frame, bad handshake). */
  protocolErrors: number;
  /** Exceptions thrown by onMessage / onUnreachable. */
  handlerErrors: number;
  /** Our peers, by the outbound link that carries our messages to them. */
  peers: Record<string, PeerStats>;
  /** Peers with a handshaken inbound connection (as named in their hello). */
  inboundPeers: string[];
}

/** Our messages to one peer, and the outbound connection that carries them. */
class PeerLink {
  state: PeerLinkState = 'idle';
  socket: net.Socket | undefined;
  timer: NodeJS.Timeout | undefined;
  address: string | undefined;
  backoffMs = 0;
  consecutiveDialFailures = 0;
  lastReceivedAt = 0;
  /** Set once a queue-full drop has been reported; cleared by the next successful flush. */
  dropReported = false;
  sentMessages = 0;
  droppedMessages = 0;

  constructor(
    readonly peerId: string,
    readonly queue: SendQueue,
  ) {}
}

/** A peer's messages to us. */
class InboundConnection {
  peerId: string | undefined;
  closed = false;
  lastReceivedAt: number;
  handshakeTimer: NodeJS.Timeout | undefined;
  readonly reader: FrameReader;
  readonly remote: string;

  constructor(
    readonly socket: net.Socket,
    maxFrameBytes: number,
  ) {
    this.reader = new FrameReader(maxFrameBytes);
    this.remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    this.lastReceivedAt = Date.now();
  }
}

// Frames the acceptor sends back (ack, reject, pong) are tiny.
const CONTROL_MAX_FRAME_BYTES = 64 * 1024;

const stderrLogger = (nodeId: string): TransportLogger => ({
  warn(fields, message) {
    process.stderr.write(`raft-transport[${nodeId}] warn: ${message} ${JSON.stringify(fields)}\n`);
  },
  info() {},
});

/** Parses "host:port" and "[ipv6]:port"; undefined when malformed. */
export function parsePeerAddress(address: string): { host: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d{1,5})$/.exec(address.trim());
  if (!m) return undefined;
  const port = Number(m[3]);
  if (!(port >= 1 && port <= 65535)) return undefined;
  return { host: (m[1] ?? m[2])!, port };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

export class TcpTransport {
  private readonly opts: Required<Omit<TransportOptions, 'onUnreachable' | 'logger'>> &
    Pick<TransportOptions, 'onUnreachable'>;
  private readonly log: TransportLogger;
  private readonly eagerFlushBytes: number;
  private server: net.Server | undefined;
  private boundPort = 0;
  private closed = false;
  private readonly links = new Map<string, PeerLink>();
  private readonly inbound = new Set<InboundConnection>();
  private readonly inboundByPeer = new Map<string, InboundConnection>();
  private readonly dirty = new Set<PeerLink>();
  private flushImmediate: NodeJS.Immediate | undefined;
  private livenessTimer: NodeJS.Timeout | undefined;
  private lastLivenessCheck = 0;
  private readonly counters = {
    sentMessages: 0,
    sentBytes: 0,
    sentWrites: 0,
    receivedMessages: 0,
    receivedBytes: 0,
    receivedFrames: 0,
    dialFailures: 0,
    connectionsOpened: 0,
    connectionsAccepted: 0,
    connectionsLost: 0,
    protocolErrors: 0,
    handlerErrors: 0,
  };
  private readonly drops = { queueFull: 0, dialFailed: 0, unencodable: 0, closed: 0 };

  constructor(options: TransportOptions) {
    if (!options.nodeId) throw new TypeError('TcpTransport: nodeId is required');
    const backoff = options.reconnectBackoffMs ?? { min: 50, max: 2000 };
    if (!(backoff.min > 0 && backoff.max >= backoff.min)) {
      throw new RangeError(`TcpTransport: reconnectBackoffMs must satisfy 0 < min <= max, got ${JSON.stringify(backoff)}`);
    }
    this.opts = {
      nodeId: options.nodeId,
      listen: options.listen,
      resolve: options.resolve,
      onMessage: options.onMessage,
      onUnreachable: options.onUnreachable,
      maxQueuedBytesPerPeer: options.maxQueuedBytesPerPeer ?? 16 * 1024 * 1024,
      maxFrameBytes: options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES,
      dialTimeoutMs: options.dialTimeoutMs ?? 3000,
      reconnectBackoffMs: backoff,
      pingIntervalMs: options.pingIntervalMs ?? 1000,
      deadPeerTimeoutMs: options.deadPeerTimeoutMs ?? 5000,
      targetFrameBytes: options.targetFrameBytes ?? 256 * 1024,
      socketBufferBytes: options.socketBufferBytes ?? 1024 * 1024,
    };
    // A burst flushes before the end of the turn once it fills a frame, and
    // well before it fills the queue (or it would be dropped, not sent).
    this.eagerFlushBytes = Math.min(this.opts.targetFrameBytes, Math.floor(this.opts.maxQueuedBytesPerPeer / 2));
    if (this.opts.deadPeerTimeoutMs <= this.opts.pingIntervalMs) {
      throw new RangeError('TcpTransport: deadPeerTimeoutMs must be longer than pingIntervalMs');
    }
    this.log = options.logger ?? stderrLogger(options.nodeId);
  }

  get nodeId(): string {
    return this.opts.nodeId;
  }

  /** The bound port (meaningful after start()). */
  get port(): number {
    return this.boundPort;
  }

  /** Starts listening. Rejects when the address cannot be bound. */
  async start(): Promise<void> {
    if (this.server) throw new Error('TcpTransport: already started');
    if (this.closed) throw new Error('TcpTransport: closed');
    const server = net.createServer({ noDelay: true }, (socket) => this.accept(socket));
    this.server = server;
    const listening = new Promise<void>((resolve, reject) => {
      let listening = false;
      server.on('error', (err) => {
        if (listening) this.log.warn({ err: errorMessage(err) }, 'raft transport: server error');
        else reject(new Error(`raft transport cannot listen on ${this.opts.listen.host}:${this.opts.listen.port}: ${errorMessage(err)}`));
      });
      server.listen({ host: this.opts.listen.host, port: this.opts.listen.port }, () => {
        listening = true;
        resolve();
      });
    });
    try {
      await listening;
    } catch (err) {
      this.server = undefined;
      server.close();
      throw err;
    }
    const address = server.address();
    this.boundPort = typeof address === 'object' && address !== null ? address.port : 0;
    this.lastLivenessCheck = Date.now();
    this.livenessTimer = setInterval(() => this.checkLiveness(), this.opts.pingIntervalMs);
    this.livenessTimer.unref();
  }

  /**
   * Queues `msg` for `peerId`'s Raft group `group`. Never throws and never
   * blocks: dials lazily, and drops the message (counted in stats) when it
   * cannot be encoded or the peer's queue is full.
   */
  send(peerId: string, group: string, msg: Message): void {
    try {
      this.sendUnsafe(peerId, group, msg);
    } catch (err) {
      // Only a bug can get here; a transport that throws into the Raft loop would be worse.
      this.drops.unencodable++;
      this.log.warn({ peer: peerId, group, err: errorMessage(err) }, 'raft transport: send failed unexpectedly');
    }
  }

  private sendUnsafe(peerId: string, group: string, msg: Message): void {
    if (this.closed) {
      this.drops.closed++;
      return;
    }
    let size: number;
    try {
      size = measureEnvelope(group, msg);
    } catch (err) {
      this.drops.unencodable++;
      this.log.warn({ peer: peerId, group, type: msg?.type, err: errorMessage(err) }, 'raft transport: dropping unencodable message');
      return;
    }
    const link = this.linkFor(peerId);
    if (size > link.queue.maxEnvelopeBytes) {
      this.drops.unencodable++;
      link.droppedMessages++;
      this.log.warn(
        { peer: peerId, group, type: msg.type, bytes: size, maxFrameBytes: this.opts.maxFrameBytes },
        'raft transport: dropping message larger than the frame limit',
      );
      return;
    }
    if (link.queue.messages > 0 && link.queue.bytes + size > this.opts.maxQueuedBytesPerPeer) {
      this.drops.queueFull++;
      link.droppedMessages++;
      if (!link.dropReported) {
        link.dropReported = true;
        this.log.debug?.({ peer: peerId, queuedBytes: link.queue.bytes }, 'raft transport: queue full, dropping');
        this.reportUnreachable(link);
      }
      return;
    }
    link.queue.push(group, msg, size);
    switch (link.state) {
      case 'idle':
        this.dial(link);
        break;
      case 'open':
        if (link.queue.bytes >= this.eagerFlushBytes) this.flush(link);
        else this.scheduleFlush(link);
        break;
      case 'connecting':
      case 'backoff':
        break; // flushed when the connection opens, dropped if it fails
    }
  }

  /**
   * Forgets a peer that left the cluster: closes the connection to it and
   * drops what is queued for it (counted as closed). A later send dials again.
   */
  removePeer(peerId: string): void {
    const link = this.links.get(peerId);
    if (link === undefined) return;
    this.links.delete(peerId);
    this.dirty.delete(link);
    if (link.timer) clearTimeout(link.timer);
    link.timer = undefined;
    const socket = link.socket;
    link.socket = undefined;
    link.state = 'idle';
    socket?.destroy();
    this.drops.closed += link.queue.clear();
  }

  stats(): TransportStats {
    let outbound = 0;
    let queuedMessages = 0;
    let queuedBytes = 0;
    const peers: Record<string, PeerStats> = {};
    for (const link of this.links.values()) {
      if (link.state === 'open') outbound++;
      queuedMessages += link.queue.messages;
      queuedBytes += link.queue.bytes;
      peers[link.peerId] = {
        state: link.state,
        address: link.address,
        queuedMessages: link.queue.messages,
        queuedBytes: link.queue.bytes,
        socketBufferedBytes: link.socket?.writableLength ?? 0,
        sentMessages: link.sentMessages,
        droppedMessages: link.droppedMessages,
        consecutiveDialFailures: link.consecutiveDialFailures,
      };
    }
    const inbound = this.inboundByPeer.size;
    const d = this.drops;
    return {
      ...this.counters,
      droppedMessages: d.queueFull + d.dialFailed + d.unencodable + d.closed,
      drops: { ...d },
      connections: outbound + inbound,
      outboundConnections: outbound,
      inboundConnections: inbound,
      queuedMessages,
      queuedBytes,
      peers,
      inboundPeers: [...this.inboundByPeer.keys()],
    };
  }

  /** Stops listening and closes every connection. Messages still queued are dropped (counted). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.flushImmediate) clearImmediate(this.flushImmediate);
    this.flushImmediate = undefined;
    this.dirty.clear();
    if (this.livenessTimer) clearInterval(this.livenessTimer);
    for (const link of this.links.values()) {
      if (link.timer) clearTimeout(link.timer);
      link.timer = undefined;
      link.socket?.destroy();
      link.socket = undefined;
      link.state = 'idle';
      const dropped = link.queue.clear();
      this.drops.closed += dropped;
      link.droppedMessages += dropped;
    }
    for (const conn of this.inbound) this.closeInbound(conn);
    const server = this.server;
    if (server) await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  // -------------------------------------------------------------------------
  // Outbound

  private linkFor(peerId: string): PeerLink {
    let link = this.links.get(peerId);
    if (link === undefined) {
      link = new PeerLink(peerId, new SendQueue(this.opts.maxFrameBytes, this.opts.targetFrameBytes));
      this.links.set(peerId, link);
    }
    return link;
  }

  private dial(link: PeerLink): void {
    let address: string | undefined;
    try {
      address = this.opts.resolve(link.peerId);
    } catch (err) {
      this.linkDown(link, `resolve threw: ${errorMessage(err)}`);
      return;
    }
    link.address = address;
    const target = address === undefined ? undefined : parsePeerAddress(address);
    if (target === undefined) {
      this.linkDown(link, address === undefined ? 'no address known for the peer' : `bad peer address "${address}"`);
      return;
    }
    link.state = 'connecting';
    const socket = net.connect({ host: target.host, port: target.port, noDelay: true, keepAlive: true, keepAliveInitialDelay: this.opts.deadPeerTimeoutMs });
    link.socket = socket;
    const reader = new FrameReader(CONTROL_MAX_FRAME_BYTES);
    let closeReason = 'connection closed by peer';
    link.timer = setTimeout(() => {
      link.timer = undefined;
      if (link.socket === socket) this.linkDown(link, `no handshake within ${this.opts.dialTimeoutMs} ms`);
    }, this.opts.dialTimeoutMs);
    link.timer.unref();
    socket.on('connect', () => {
      if (link.socket === socket) socket.write(encodeHello(this.opts.nodeId, link.peerId));
    });
    socket.on('data', (chunk: Buffer) => {
      if (link.socket !== socket) return;
      reader.push(chunk);
      try {
        for (let frame = reader.next(); frame !== undefined && link.socket === socket; frame = reader.next()) {
          this.onOutboundFrame(link, frame.kind, frame.body);
        }
      } catch (err) {
        if (link.socket !== socket) return;
        if (err instanceof CodecError) this.counters.protocolErrors++;
        this.linkDown(link, `protocol error from peer: ${errorMessage(err)}`);
      }
    });
    socket.on('drain', () => {
      if (link.socket === socket) this.flush(link);
    });
    socket.on('error', (err) => {
      closeReason = errorMessage(err);
    });
    socket.on('close', () => {
      if (link.socket === socket) this.linkDown(link, closeReason);
    });
  }

  private onOutboundFrame(link: PeerLink, kind: number, body: Buffer): void {
    if (link.state === 'connecting') {
      if (kind === FrameKind.HelloAck) {
        const node = decodeHelloAck(body);
        if (node !== link.peerId) throw new CodecError(`handshake answered by "${node}", expected "${link.peerId}"`);
        this.linkOpen(link);
        return;
      }
      if (kind === FrameKind.HelloReject) {
        this.linkDown(link, `peer refused the handshake: ${decodeHelloReject(body)}`);
        return;
      }
      throw new CodecError(`unexpected frame kind ${kind} during handshake`);
    }
    if (kind === FrameKind.Pong) {
      link.lastReceivedAt = Date.now();
      return;
    }
    throw new CodecError(`unexpected frame kind ${kind} on an outbound connection`);
  }

  private linkOpen(link: PeerLink): void {
    if (link.timer) clearTimeout(link.timer);
    link.timer = undefined;
    if (link.consecutiveDialFailures > 0) {
      this.log.info(
        { peer: link.peerId, address: link.address, failures: link.consecutiveDialFailures },
        'raft transport: connected after failures',
      );
    }
    link.state = 'open';
    this.counters.connectionsOpened++;
    link.backoffMs = 0;
    link.consecutiveDialFailures = 0;
    link.lastReceivedAt = Date.now();
    this.flush(link);
  }

  /** The connect failed or the connection broke: release the socket and retry later. */
  private linkDown(link: PeerLink, reason: string): void {
    const wasOpen = link.state === 'open';
    const socket = link.socket;
    link.socket = undefined;
    socket?.destroy();
    if (link.timer) clearTimeout(link.timer);
    link.timer = undefined;
    this.dirty.delete(link);
    if (this.closed) {
      link.state = 'idle';
      return;
    }
    let delay: number;
    const { min, max } = this.opts.reconnectBackoffMs;
    if (wasOpen) {
      this.counters.connectionsLost++;
      this.log.warn({ peer: link.peerId, address: link.address, reason }, 'raft transport: connection lost');
      delay = min;
    } else {
      this.counters.dialFailures++;
      link.consecutiveDialFailures++;
      const dropped = link.queue.clear();
      this.drops.dialFailed += dropped;
      link.droppedMessages += dropped;
      const fields = { peer: link.peerId, address: link.address, reason, dropped, failures: link.consecutiveDialFailures };
      // A peer that stays down fails every backoff period; say so once, then quietly.
      if (link.consecutiveDialFailures === 1) this.log.warn(fields, 'raft transport: cannot connect');
      else this.log.debug?.(fields, 'raft transport: cannot connect');
      link.backoffMs = link.backoffMs === 0 ? min : Math.min(max, link.backoffMs * 2);
      delay = link.backoffMs;
    }
    // Jitter keeps many processes that lost the same peer from redialing in lockstep.
    delay = Math.round(delay * (0.8 + 0.4 * Math.random()));
    link.state = 'backoff';
    link.timer = setTimeout(() => {
      link.timer = undefined;
      if (this.closed || link.state !== 'backoff') return;
      if (link.queue.messages > 0) this.dial(link);
      else link.state = 'idle';
    }, delay);
    link.timer.unref();
    this.reportUnreachable(link);
  }

  private reportUnreachable(link: PeerLink): void {
    const onUnreachable = this.opts.onUnreachable;
    if (!onUnreachable) return;
    queueMicrotask(() => {
      if (this.closed) return;
      try {
        onUnreachable(link.peerId);
      } catch (err) {
        this.counters.handlerErrors++;
        this.log.warn({ peer: link.peerId, err: errorMessage(err) }, 'raft transport: onUnreachable threw');
      }
    });
  }

  private scheduleFlush(link: PeerLink): void {
    this.dirty.add(link);
    if (this.flushImmediate === undefined) {
      this.flushImmediate = setImmediate(() => {
        this.flushImmediate = undefined;
        const links = [...this.dirty];
        this.dirty.clear();
        for (const l of links) this.flush(l);
      });
    }
  }

  private flush(link: PeerLink): void {
    const socket = link.socket;
    if (link.state !== 'open' || socket === undefined) return;
    // The socket holds enough already; its 'drain' event (due, since a write
    // returned false) flushes again.
    if (socket.writableNeedDrain && socket.writableLength >= this.opts.socketBufferBytes) return;
    if (link.queue.messages === 0) return;
    this.dirty.delete(link);
    const { frames, messages, bytes } = link.queue.drain();
    if (frames.length === 1) {
      socket.write(frames[0]!);
    } else {
      socket.cork();
      for (const f of frames) socket.write(f);
      socket.uncork();
    }
    link.sentMessages += messages;
    link.dropReported = false;
    this.counters.sentMessages += messages;
    this.counters.sentBytes += bytes;
    this.counters.sentWrites++;
  }

  // -------------------------------------------------------------------------
  // Inbound

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.counters.connectionsAccepted++;
    socket.setNoDelay(true);
    socket.setKeepAlive(true, this.opts.deadPeerTimeoutMs);
    const conn = new InboundConnection(socket, this.opts.maxFrameBytes);
    this.inbound.add(conn);
    conn.handshakeTimer = setTimeout(() => {
      conn.handshakeTimer = undefined;
      if (!conn.peerId) this.rejectInbound(conn, `no handshake within ${this.opts.dialTimeoutMs} ms`, false);
    }, this.opts.dialTimeoutMs);
    conn.handshakeTimer.unref();
    socket.on('data', (chunk: Buffer) => this.onInboundData(conn, chunk));
    socket.on('error', (err) => {
      this.log.debug?.({ peer: conn.peerId, remote: conn.remote, err: errorMessage(err) }, 'raft transport: inbound socket error');
    });
    socket.on('close', () => this.closeInbound(conn));
  }

  private onInboundData(conn: InboundConnection, chunk: Buffer): void {
    if (conn.closed) return;
    conn.lastReceivedAt = Date.now();
    this.counters.receivedBytes += chunk.length;
    conn.reader.push(chunk);
    try {
      for (let frame = conn.reader.next(); frame !== undefined && !conn.closed; frame = conn.reader.next()) {
        this.counters.receivedFrames++;
        this.onInboundFrame(conn, frame.kind, frame.body);
      }
    } catch (err) {
      if (conn.closed) return;
      this.rejectInbound(conn, errorMessage(err), true);
    }
  }

  private onInboundFrame(conn: InboundConnection, kind: number, body: Buffer): void {
    if (conn.peerId === undefined) {
      if (kind !== FrameKind.Hello) throw new CodecError(`expected a hello frame, got kind ${kind}`);
      this.onHello(conn, body);
      return;
    }
    if (kind === FrameKind.Batch) {
      // Decode the whole frame first: a bad frame delivers nothing.
      const envelopes: Envelope[] = decodeBatchBody(body);
      const onMessage = this.opts.onMessage;
      for (let i = 0; i < envelopes.length; i++) {
        const env = envelopes[i]!;
        this.counters.receivedMessages++;
        try {
          onMessage(env.group, env.msg);
        } catch (err) {
          this.counters.handlerErrors++;
          this.log.warn({ peer: conn.peerId, group: env.group, err: errorMessage(err) }, 'raft transport: onMessage threw');
        }
        if (conn.closed) return; // the handler closed the transport
      }
      return;
    }
    if (kind === FrameKind.Ping) {
      conn.socket.write(PONG_FRAME);
      return;
    }
    throw new CodecError(`unexpected frame kind ${kind} on an inbound connection`);
  }

  private onHello(conn: InboundConnection, body: Buffer): void {
    const hello = decodeHello(body);
    if (hello.version !== PROTOCOL_VERSION) {
      this.rejectInbound(conn, `protocol version ${hello.version} is not supported (this node speaks ${PROTOCOL_VERSION})`, true);
      return;
    }
    if (hello.to !== this.opts.nodeId) {
      this.rejectInbound(conn, `this is node "${this.opts.nodeId}", not "${hello.to}"`, true);
      return;
    }
    if (conn.handshakeTimer) clearTimeout(conn.handshakeTimer);
    conn.handshakeTimer = undefined;
    conn.peerId = hello.from;
    // A second connection from the same peer means it gave up on the first
    // (it restarted or saw the old one break); the old one may be half-open.
    const previous = this.inboundByPeer.get(hello.from);
    if (previous !== undefined) {
      this.log.info({ peer: hello.from, remote: previous.remote }, 'raft transport: replacing the previous inbound connection');
      this.closeInbound(previous);
    }
    this.inboundByPeer.set(hello.from, conn);
    conn.socket.write(encodeHelloAck(this.opts.nodeId));
  }

  /** Closes an inbound connection for a reason worth logging; tells the dialer why when it is still in its handshake. */
  private rejectInbound(conn: InboundConnection, reason: string, protocolError: boolean): void {
    if (conn.closed) return;
    if (protocolError) this.counters.protocolErrors++;
    this.log.warn({ peer: conn.peerId, remote: conn.remote, reason }, 'raft transport: closing inbound connection');
    if (conn.peerId === undefined && protocolError) {
      try {
        conn.socket.end(encodeHelloReject(reason));
        conn.closed = true;
        this.forgetInbound(conn);
        // end() lets the reject reach the dialer; destroy anyway if it does not read it.
        setTimeout(() => conn.socket.destroy(), 1000).unref();
        return;
      } catch {
        // fall through to destroy
      }
    }
    this.closeInbound(conn);
  }

  private closeInbound(conn: InboundConnection): void {
    if (!conn.closed) {
      conn.closed = true;
      conn.socket.destroy();
    }
    this.forgetInbound(conn);
  }

  private forgetInbound(conn: InboundConnection): void {
    if (conn.handshakeTimer) clearTimeout(conn.handshakeTimer);
    conn.handshakeTimer = undefined;
    this.inbound.delete(conn);
    if (conn.peerId !== undefined && this.inboundByPeer.get(conn.peerId) === conn) this.inboundByPeer.delete(conn.peerId);
  }

  // -------------------------------------------------------------------------
  // Liveness

  private checkLiveness(): void {
    if (this.closed) return;
    const now = Date.now();
    // If this process itself was stalled (GC, CPU starvation, SIGSTOP), the
    // peers' frames may be sitting unread in the socket: do not blame them.
    const stalled = now - this.lastLivenessCheck > 2 * this.opts.pingIntervalMs;
    this.lastLivenessCheck = now;
    const deadline = now - this.opts.deadPeerTimeoutMs;
    for (const link of this.links.values()) {
      if (link.state !== 'open' || link.socket === undefined) continue;
      if (stalled) link.lastReceivedAt = now;
      else if (link.lastReceivedAt < deadline) {
        this.linkDown(link, `no answer to pings for ${this.opts.deadPeerTimeoutMs} ms`);
        continue;
      }
      link.socket.write(PING_FRAME);
    }
    for (const conn of [...this.inbound]) {
      if (conn.peerId === undefined) continue; // the handshake timer covers it
      if (stalled) conn.lastReceivedAt = now;
      else if (conn.lastReceivedAt < deadline) {
        this.rejectInbound(conn, `peer silent for ${this.opts.deadPeerTimeoutMs} ms`, false);
      }
    }
  }
}
