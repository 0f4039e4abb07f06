// TcpTransport under faults: restarts, dead and silent peers, bad bytes.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FrameKind, encodeBatchFrame, encodeHello, encodeHelloAck } from '../../../src/raft/transport/codec.js';
import { FrameReader } from '../../../src/raft/transport/frame-reader.js';
import { Cluster, freePort, idle, seqMessage, seqOf, waitUntil } from './harness.js';

const cluster = new Cluster();
const rawSockets: net.Socket[] = [];
const rawServers: net.Server[] = [];
afterEach(async () => {
  for (const s of rawSockets.splice(0)) s.destroy();
  await Promise.all(rawServers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await cluster.closeAll();
});

async function rawConnect(port: number): Promise<net.Socket> {
  const socket = net.connect({ host: '127.0.0.1', port });
  rawSockets.push(socket);
  await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
  return socket;
}

/** Tracks whether the other end closed `socket` (reading and discarding what it sends, or 'close' never comes). */
function closedPromise(socket: net.Socket): { closed: () => boolean } {
  let closed = false;
  socket.on('close', () => (closed = true)).on('error', () => {});
  socket.resume();
  return { closed: () => closed };
}

/** A raw server whose accepted sockets are destroyed at cleanup (server.close waits for them). */
function rawServer(onConnection: (socket: net.Socket) => void): net.Server {
  const server = net.createServer((socket) => {
    rawSockets.push(socket);
    onConnection(socket);
  });
  rawServers.push(server);
  return server;
}

describe('TcpTransport: a peer that restarts', () => {
  it('flows again to a new process on the same port, without duplicates', async () => {
    const a = await cluster.start('a');
    const b1 = await cluster.start('b');
    const port = b1.transport.port;
    let seq = 0;
    const sendSome = (n: number) => {
      for (let i = 0; i < n; i++, seq++) a.transport.send('b', `g${seq % 5}`, seqMessage('a', 'b', seq));
    };
    sendSome(100);
    await waitUntil('b1 gets the first 100', () => b1.received.length === 100);

    await b1.transport.close();
    await waitUntil('a notices the loss', () => a.transport.stats().connectionsLost === 1);
    await waitUntil('onUnreachable(b)', () => a.unreachable.includes('b'));
    sendSome(50); // while b is down: lost or queued, never thrown

    const b2 = await cluster.start('b', { listen: { host: '127.0.0.1', port } });
    expect(b2.transport.port).toBe(port);
    // Raft keeps sending; so does this loop until b2 hears from a.
    for (let turns = 0; b2.received.length < 10; turns++) {
      if (turns > 500) throw new Error('no messages reached the restarted peer');
      sendSome(1);
      await idle(10);
    }
    const firstAtB2 = seqOf(b2.received[0]!.msg);
    sendSome(100);
    await waitUntil('the last message at b2', () => seqOf(b2.received.at(-1)!.msg) === seq - 1);

    const got1 = b1.received.map((r) => seqOf(r.msg));
    const got2 = b2.received.map((r) => seqOf(r.msg));
    expect(got1).toEqual([...Array(100).keys()]);
    // Strictly increasing at b2 (in order, no duplicates) and nothing b1 already had.
    expect(got2.every((s, i) => i === 0 || s > got2[i - 1]!)).toBe(true);
    expect(firstAtB2).toBeGreaterThanOrEqual(100);
    // Once connected, nothing is lost: b2 has everything from its first message on.
    expect(got2).toEqual([...Array(seq - firstAtB2).keys()].map((i) => i + firstAtB2));
    const s = a.transport.stats();
    expect(s.sentMessages + s.droppedMessages).toBe(seq);
  });

  it('accepts a restarted dialer and replaces its old inbound connection', async () => {
    const b = await cluster.start('b');
    const a1 = await cluster.start('a');
    a1.transport.send('b', 'g', seqMessage('a', 'b', 0));
    await waitUntil('first message', () => b.received.length === 1);
    // A second process claiming to be "a" (the restarted one) while the old connection still looks open.
    const raw = await rawConnect(b.transport.port);
    const rawState = closedPromise(raw);
    raw.write(encodeHello('a', 'b'));
    await waitUntil('b drops the old connection from a', () => b.logs.some((l) => l.message.includes('replacing')));
    await waitUntil('a1 to see its connection closed', () => a1.transport.stats().connectionsLost === 1);
    expect(b.transport.stats().inboundPeers).toEqual(['a']);
    raw.write(encodeBatchFrame([{ group: 'g', msg: seqMessage('a', 'b', 1) }]));
    await waitUntil('the message on the new connection', () => b.received.length === 2);
    // And the other way round: a1 redials and takes over again.
    a1.transport.send('b', 'g', seqMessage('a', 'b', 2));
    await waitUntil('a1 back', () => b.received.length === 3);
    await waitUntil('the raw connection replaced in turn', rawState.closed);
    expect(b.transport.stats().inboundPeers).toEqual(['a']);
    expect(b.transport.stats().connectionsAccepted).toBe(3);
  });
});

describe('TcpTransport: a peer that is down', () => {
  it('never throws, keeps the queue bounded, counts every drop', async () => {
    const a = await cluster.start('a', { maxQueuedBytesPerPeer: 64 * 1024, reconnectBackoffMs: { min: 20, max: 50 } });
    cluster.addresses.set('dead', `127.0.0.1:${await freePort()}`);
    const TOTAL = 20_000;
    let maxQueued = 0;
    const thrown: unknown[] = [];
    for (let i = 0; i < TOTAL; i++) {
      try {
        a.transport.send('dead', `g${i % 10}`, seqMessage('a', 'dead', i, 1000));
      } catch (err) {
        thrown.push(err);
      }
      maxQueued = Math.max(maxQueued, a.transport.stats().queuedBytes);
      if (i % 1000 === 999) await idle(5); // let dials fail in between
    }
    expect(thrown).toEqual([]);
    expect(maxQueued).toBeGreaterThan(32 * 1024);
    expect(maxQueued).toBeLessThanOrEqual(64 * 1024);
    await waitUntil('the queue to be dropped after a failed dial', () => a.transport.stats().queuedMessages === 0);
    const s = a.transport.stats();
    expect(s.sentMessages).toBe(0);
    expect(s.droppedMessages).toBe(TOTAL);
    expect(s.drops.queueFull).toBeGreaterThan(0);
    expect(s.drops.dialFailed).toBeGreaterThan(0);
    expect(s.dialFailures).toBeGreaterThan(0);
    expect(s.peers.dead!.state).not.toBe('open');
    expect(a.unreachable.length).toBeGreaterThan(0);
    expect(a.unreachable.every((p) => p === 'dead')).toBe(true);
    // Said once, not once per failed dial.
    expect(a.logs.filter((l) => l.level === 'warn' && l.message.includes('cannot connect'))).toHaveLength(1);
  });

  it('treats a peer without an address like a dead one', async () => {
    const a = await cluster.start('a');
    expect(() => a.transport.send('nobody', 'g', seqMessage('a', 'nobody', 0))).not.toThrow();
    await waitUntil('the drop', () => a.transport.stats().drops.dialFailed === 1);
    expect(a.logs.some((l) => l.fields.reason === 'no address known for the peer')).toBe(true);
    await waitUntil('onUnreachable(nobody)', () => a.unreachable.includes('nobody'));
  });

  it('gives up on a peer that accepts but never answers the handshake (paused process)', async () => {
    const silent = rawServer(() => {}); // accepts, never reads or writes
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
    cluster.addresses.set('paused', `127.0.0.1:${(silent.address() as net.AddressInfo).port}`);
    const a = await cluster.start('a', { dialTimeoutMs: 150 });
    a.transport.send('paused', 'g', seqMessage('a', 'paused', 0));
    await waitUntil('a dial timeout', () => a.transport.stats().dialFailures >= 1, 5_000);
    expect(a.logs.some((l) => String(l.fields.reason).includes('no handshake within 150 ms'))).toBe(true);
    expect(a.transport.stats().drops.dialFailed).toBe(1);
  });

  it('closes a connection whose peer stops answering pings (half-open)', async () => {
    // A fake peer that completes the handshake, then goes silent.
    const fake = rawServer((socket) => {
      const reader = new FrameReader(1 << 20);
      socket.on('data', (chunk) => {
        reader.push(chunk);
        for (let f = reader.next(); f; f = reader.next()) {
          if (f.kind === FrameKind.Hello) socket.write(encodeHelloAck('frozen'));
        }
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', r));
    cluster.addresses.set('frozen', `127.0.0.1:${(fake.address() as net.AddressInfo).port}`);
    const a = await cluster.start('a', { pingIntervalMs: 30, deadPeerTimeoutMs: 150 });
    a.transport.send('frozen', 'g', seqMessage('a', 'frozen', 0));
    await waitUntil('the connection to open', () => a.transport.stats().connectionsOpened === 1);
    await waitUntil('the dead connection to be closed', () => a.transport.stats().connectionsLost === 1, 5_000);
    expect(a.logs.some((l) => String(l.fields.reason).includes('no answer to pings'))).toBe(true);
    await waitUntil('onUnreachable(frozen)', () => a.unreachable.includes('frozen'));
  });

  it('closes an inbound connection whose dialer goes silent', async () => {
    const b = await cluster.start('b', { pingIntervalMs: 30, deadPeerTimeoutMs: 150 });
    const raw = await rawConnect(b.transport.port);
    const state = closedPromise(raw);
    raw.write(encodeHello('ghost', 'b'));
    await waitUntil('the handshake', () => b.transport.stats().inboundPeers.includes('ghost'));
    await waitUntil('b to close the silent connection', state.closed, 5_000);
    expect(b.logs.some((l) => String(l.fields.reason).includes('silent'))).toBe(true);
    expect(b.transport.stats().inboundPeers).toEqual([]);
  });
});

describe('TcpTransport: a peer that reads too slowly', () => {
  it('stops feeding the socket, bounds the queue, drops, and recovers when the peer reads again', async () => {
    // A fake peer that completes the handshake and then stops reading.
    let peerSocket: net.Socket | undefined;
    const slow = rawServer((socket) => {
      peerSocket = socket;
      const reader = new FrameReader(1 << 20);
      let handshaken = false;
      socket.on('data', (chunk) => {
        if (handshaken) return; // discard, once reading resumes
        reader.push(chunk);
        if (reader.next()?.kind === FrameKind.Hello) {
          handshaken = true;
          socket.write(encodeHelloAck('slow'));
          socket.pause();
        }
      });
      socket.on('error', () => {});
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
    cluster.addresses.set('slow', `127.0.0.1:${(slow.address() as net.AddressInfo).port}`);
    const QUEUE = 256 * 1024;
    const SOCKET = 512 * 1024;
    const a = await cluster.start('a', { maxQueuedBytesPerPeer: QUEUE, socketBufferBytes: SOCKET });
    a.transport.send('slow', 'g', seqMessage('a', 'slow', 0));
    await waitUntil('the connection', () => a.transport.stats().connectionsOpened === 1);

    // 100 KB per turn (less than the queue bound, so a turn alone never overflows it), until the
    // kernel buffers, the socket bound and the queue bound are all full. At most 200 MB.
    let maxQueued = 0;
    let maxSocket = 0;
    for (let turn = 0; turn < 2000 && a.transport.stats().drops.queueFull === 0; turn++) {
      for (let i = 0; i < 100; i++) a.transport.send('slow', 'g', seqMessage('a', 'slow', turn * 100 + i + 1, 1000));
      const p = a.transport.stats().peers.slow!;
      maxQueued = Math.max(maxQueued, p.queuedBytes);
      maxSocket = Math.max(maxSocket, p.socketBufferedBytes);
      await new Promise((r) => setImmediate(r));
    }
    const s = a.transport.stats();
    expect(s.drops.queueFull).toBeGreaterThan(0);
    expect(maxQueued).toBeLessThanOrEqual(QUEUE);
    // The socket gets no more once it holds SOCKET bytes; one flush can overshoot by at most the queue.
    expect(maxSocket).toBeLessThanOrEqual(SOCKET + QUEUE + 64 * 1024);
    await waitUntil('onUnreachable(slow) for the drops', () => a.unreachable.includes('slow'));
    expect(s.connectionsLost).toBe(0);

    // The peer reads again: everything handed over drains and new messages pass.
    const sentBefore = s.sentMessages;
    peerSocket!.resume();
    a.transport.send('slow', 'g', seqMessage('a', 'slow', 999_999));
    await waitUntil('the queue to drain', () => {
      const p = a.transport.stats().peers.slow!;
      return p.queuedMessages === 0 && p.socketBufferedBytes === 0;
    });
    expect(a.transport.stats().sentMessages).toBeGreaterThan(sentBefore);
    expect(a.transport.stats().connectionsLost).toBe(0);
  });
});

describe('TcpTransport: bad input closes only the offending connection', () => {
  it('an oversized frame closes that connection; others keep flowing; the sender recovers', async () => {
    const b = await cluster.start('b', { maxFrameBytes: 4096 });
    const a = await cluster.start('a');
    const c = await cluster.start('c', { maxFrameBytes: 4096 });
    a.transport.send('b', 'g', seqMessage('a', 'b', 0));
    c.transport.send('b', 'g', seqMessage('c', 'b', 0));
    await waitUntil('both connected', () => b.received.length === 2);

    a.transport.send('b', 'g', seqMessage('a', 'b', 1, 10_000)); // a allows 64 MiB frames; b does not
    await waitUntil('b closes a', () => b.logs.some((l) => String(l.fields.reason).includes('exceeds the limit of 4096')));
    expect(b.transport.stats().protocolErrors).toBe(1);
    await waitUntil('a notices', () => a.transport.stats().connectionsLost === 1);

    for (let i = 1; i <= 20; i++) c.transport.send('b', 'g', seqMessage('c', 'b', i));
    // a recovers: the next dial opens a new connection and small messages pass.
    for (let turns = 0; !b.received.some((r) => r.msg.from === 'a' && seqOf(r.msg) >= 2); turns++) {
      if (turns > 500) throw new Error('a never got through again');
      a.transport.send('b', 'g', seqMessage('a', 'b', 2 + turns));
      await idle(10);
    }
    await waitUntil("c's messages", () => b.received.filter((r) => r.msg.from === 'c').length === 21);
    expect(c.transport.stats().connectionsLost).toBe(0);
    expect(c.transport.stats().connectionsOpened).toBe(1);
    expect(b.received.some((r) => r.msg.from === 'a' && seqOf(r.msg) === 1)).toBe(false);
  });

  it('a sender never emits a message bigger than its own frame limit', async () => {
    const a = await cluster.start('a', { maxFrameBytes: 4096 });
    const b = await cluster.start('b');
    a.transport.send('b', 'g', seqMessage('a', 'b', 0, 10_000));
    a.transport.send('b', 'g', seqMessage('a', 'b', 1));
    await waitUntil('the small message', () => b.received.length === 1);
    expect(seqOf(b.received[0]!.msg)).toBe(1);
    expect(a.transport.stats().drops.unencodable).toBe(1);
  });

  it('garbage instead of a handshake, a batch before the handshake, and a corrupt batch are each refused', async () => {
    const b = await cluster.start('b');
    const a = await cluster.start('a');
    a.transport.send('b', 'g', seqMessage('a', 'b', 0));
    await waitUntil('a connected', () => b.received.length === 1);

    const http = await rawConnect(b.transport.port);
    const httpState = closedPromise(http);
    http.write('GET / HTTP/1.1\r\nHost: b\r\n\r\n');

    const early = await rawConnect(b.transport.port);
    const earlyState = closedPromise(early);
    early.write(encodeBatchFrame([{ group: 'g', msg: seqMessage('x', 'b', 0) }]));

    const corrupt = await rawConnect(b.transport.port);
    const corruptState = closedPromise(corrupt);
    corrupt.write(encodeHello('mallory', 'b'));
    const frame = Buffer.from(encodeBatchFrame([{ group: 'g', msg: seqMessage('mallory', 'b', 0) }]));
    frame.writeUInt32BE(99, 5); // claims 99 messages
    corrupt.write(frame);

    const wrongVersion = await rawConnect(b.transport.port);
    const wrongVersionState = closedPromise(wrongVersion);
    const hello = Buffer.from(encodeHello('old', 'b'));
    hello[9] = 99; // version byte: length(4) kind(1) magic(4) version
    wrongVersion.write(hello);

    await waitUntil('all four closed', () => httpState.closed() && earlyState.closed() && corruptState.closed() && wrongVersionState.closed());
    expect(b.transport.stats().protocolErrors).toBe(4);
    expect(b.received.every((r) => r.msg.from === 'a')).toBe(true);
    const reasons = b.logs.map((l) => String(l.fields.reason));
    expect(reasons.some((r) => r.includes('exceeds the limit'))).toBe(true); // "GET " read as a length
    expect(reasons.some((r) => r.includes('expected a hello frame'))).toBe(true);
    expect(reasons.some((r) => r.includes('bad batch count') || r.includes('truncated'))).toBe(true);
    expect(reasons.some((r) => r.includes('protocol version 99'))).toBe(true);

    // a's connection was never disturbed.
    a.transport.send('b', 'g', seqMessage('a', 'b', 1));
    await waitUntil('a still flows', () => b.received.length === 2);
    expect(a.transport.stats().connectionsLost).toBe(0);
  });

  it('a dialer that never says hello is dropped after the dial timeout', async () => {
    const b = await cluster.start('b', { dialTimeoutMs: 100 });
    const raw = await rawConnect(b.transport.port);
    const state = closedPromise(raw);
    await waitUntil('the handshake deadline', state.closed, 5_000);
    expect(b.logs.some((l) => String(l.fields.reason).includes('no handshake within 100 ms'))).toBe(true);
  });
});

describe('TcpTransport: close', () => {
  it('drops what is queued, counts it, and ignores later sends', async () => {
    const a = await cluster.start('a');
    cluster.addresses.set('slow', `127.0.0.1:${await freePort()}`);
    for (let i = 0; i < 10; i++) a.transport.send('slow', 'g', seqMessage('a', 'slow', i));
    await a.transport.close();
    expect(() => a.transport.send('slow', 'g', seqMessage('a', 'slow', 10))).not.toThrow();
    const s = a.transport.stats();
    expect(s.drops.closed + s.drops.dialFailed).toBe(11);
    expect(s.connections).toBe(0);
  });
});
