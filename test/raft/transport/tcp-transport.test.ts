// TcpTransport on real loopback sockets: throughput, ordering, coalescing,
// handshake. Fault cases are in tcp-transport-faults.test.ts.
import { afterEach, describe, expect, it } from 'vitest';
import type { Message } from '../../../src/raft/core/types.js';
import { TcpTransport, parsePeerAddress } from '../../../src/raft/transport/tcp-transport.js';
import { Cluster, idle, seqMessage, seqOf, waitUntil } from './harness.js';

const cluster = new Cluster();
afterEach(() => cluster.closeAll());

describe('TcpTransport: delivery', () => {
  it('exchanges 100,000 messages each way across 50 groups, in order, over one connection per direction', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    const TOTAL = 100_000;
    const GROUPS = 50;
    const PER_TURN = 2_000;

    const pump = async (from: typeof a, to: typeof b) => {
      for (let seq = 0; seq < TOTAL; ) {
        for (const end = Math.min(TOTAL, seq + PER_TURN); seq < end; seq++) {
          from.transport.send(to.id, `g${seq % GROUPS}`, seqMessage(from.id, to.id, seq));
        }
        await new Promise((r) => setImmediate(r));
      }
    };
    await Promise.all([pump(a, b), pump(b, a)]);
    await waitUntil('100k messages on both sides', () => a.received.length === TOTAL && b.received.length === TOTAL, 30_000);

    for (const [node, peer] of [
      [a, 'b'],
      [b, 'a'],
    ] as const) {
      // Checked by hand: 200,000 expect() calls would take longer than the transfer.
      const problems: string[] = [];
      const lastByGroup = new Map<string, number>();
      node.received.forEach(({ group, msg }, i) => {
        const seq = seqOf(msg);
        if (seq !== i) problems.push(`message #${i} carries seq ${seq}`); // order per connection
        if (msg.from !== peer || group !== `g${seq % GROUPS}`) problems.push(`message #${i}: from ${msg.from} group ${group}`);
        if (seq <= (lastByGroup.get(group) ?? -1)) problems.push(`group ${group}: ${seq} after ${lastByGroup.get(group)}`);
        lastByGroup.set(group, seq);
      });
      expect(problems.slice(0, 5)).toEqual([]);
      expect(lastByGroup.size).toBe(GROUPS);
      const s = node.transport.stats();
      expect(s.droppedMessages).toBe(0);
      expect(s.sentMessages).toBe(TOTAL);
      expect(s.receivedMessages).toBe(TOTAL);
      expect(s.connectionsOpened).toBe(1);
      expect(s.connectionsAccepted).toBe(1);
      expect(s.connections).toBe(2);
      expect(s.inboundPeers).toEqual([peer]);
      // Coalescing: far fewer socket writes than messages.
      expect(s.sentWrites).toBeLessThan(TOTAL / 50);
    }
    expect(a.logs.filter((l) => l.level === 'warn')).toEqual([]);
  });

  it('hands a burst queued in one turn to the socket in a single write', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    a.transport.send('b', 'g', seqMessage('a', 'b', 0));
    await waitUntil('the connection', () => b.received.length === 1);
    const before = a.transport.stats().sentWrites;
    for (let i = 1; i <= 1_000; i++) a.transport.send('b', `g${i % 7}`, seqMessage('a', 'b', i));
    expect(a.transport.stats().queuedMessages).toBe(1_000); // nothing written synchronously
    await waitUntil('the burst', () => b.received.length === 1_001);
    expect(a.transport.stats().sentWrites - before).toBe(1);
    expect(b.transport.stats().receivedFrames).toBeLessThanOrEqual(3); // hello + first + burst (ping at most adds frames, not messages)
  });

  it('delivers every message type and binary payloads intact', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    const blob = Uint8Array.from({ length: 1_000_000 }, (_, i) => (i * 7919) & 0xff);
    const msgs: Message[] = [
      { type: 'vote', from: 'a', to: 'b', term: 9, logTerm: 8, index: 100, transfer: true },
      { type: 'appResp', from: 'a', to: 'b', term: 9, index: 5, reject: true, rejectHint: 3, logTermHint: 2 },
      { type: 'heartbeat', from: 'a', to: 'b', term: 9, commit: 100, context: 'ctx' },
      {
        type: 'snap',
        from: 'a',
        to: 'b',
        term: 9,
        snapshot: { meta: { index: 100, term: 8, conf: { voters: ['a', 'b'], learners: [] } }, data: blob },
      },
      { type: 'timeoutNow', from: 'a', to: 'b', term: 9 },
    ];
    for (const m of msgs) a.transport.send('b', 'group-1', m);
    await waitUntil('all messages', () => b.received.length === msgs.length);
    expect(b.received.map((r) => r.msg.type)).toEqual(msgs.map((m) => m.type));
    const snap = b.received[3]!.msg.snapshot!;
    expect(Buffer.from(snap.data).equals(Buffer.from(blob))).toBe(true);
    expect(b.received[0]!.msg).toEqual(msgs[0]);
    expect(b.received[1]!.msg).toEqual(msgs[1]);
  });

  it('lets the caller reuse a message object right after send', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    const msg = seqMessage('a', 'b', 1);
    a.transport.send('b', 'g', msg);
    msg.index = 2;
    msg.entries![0]!.data.fill(0xff);
    await waitUntil('the message', () => b.received.length === 1);
    expect(seqOf(b.received[0]!.msg)).toBe(1);
  });

  it('keeps delivering after onMessage throws', async () => {
    let calls = 0;
    const a = await cluster.start('a');
    const b = await cluster.start('b', {
      onMessage: () => {
        calls++;
        if (calls === 2) throw new Error('handler bug');
      },
    });
    for (let i = 0; i < 5; i++) a.transport.send('b', 'g', seqMessage('a', 'b', i));
    await waitUntil('5 handler calls', () => calls === 5);
    expect(b.transport.stats().handlerErrors).toBe(1);
    expect(b.logs.some((l) => l.message.includes('onMessage threw'))).toBe(true);
    expect(a.transport.stats().connectionsLost).toBe(0);
  });

  it('dials lazily and keeps connections up with pings while idle', async () => {
    const a = await cluster.start('a', { pingIntervalMs: 20, deadPeerTimeoutMs: 100 });
    const b = await cluster.start('b', { pingIntervalMs: 20, deadPeerTimeoutMs: 100 });
    await idle(50);
    expect(a.transport.stats().connections).toBe(0);
    a.transport.send('b', 'g', seqMessage('a', 'b', 0));
    await waitUntil('the message', () => b.received.length === 1);
    await idle(400); // four dead-peer timeouts with no traffic but pings
    expect(a.transport.stats().connectionsLost).toBe(0);
    expect(b.transport.stats().inboundPeers).toEqual(['a']);
    a.transport.send('b', 'g', seqMessage('a', 'b', 1));
    await waitUntil('the second message', () => b.received.length === 2);
    expect(a.transport.stats().connectionsOpened).toBe(1);
  });

  it('refuses a connection meant for another node (stale address)', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    cluster.addresses.set('c', cluster.addresses.get('b')!); // c's old address now belongs to b
    a.transport.send('c', 'g', seqMessage('a', 'c', 0));
    await waitUntil('the refusal', () => a.transport.stats().dialFailures >= 1);
    expect(b.received).toEqual([]);
    expect(a.logs.some((l) => String(l.fields.reason).includes('this is node "b", not "c"'))).toBe(true);
    expect(a.transport.stats().drops.dialFailed).toBe(1);
    await waitUntil('onUnreachable(c)', () => a.unreachable.includes('c'));
  });

  it('re-resolves the address on every dial', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    a.transport.send('b', 'g', seqMessage('a', 'b', 0));
    await waitUntil('first message', () => b.received.length === 1);
    await b.transport.close();
    const b2 = await cluster.start('b'); // new port, new address in the book
    expect(b2.transport.port).not.toBe(b.transport.port);
    // Raft keeps sending (heartbeats); so does this loop, until one gets through.
    for (let i = 1; b2.received.length === 0; i++) {
      if (i > 500) throw new Error('messages never reached the moved peer');
      a.transport.send('b', 'g', seqMessage('a', 'b', i));
      await idle(10);
    }
    expect(a.transport.stats().peers.b!.address).toBe(`127.0.0.1:${b2.transport.port}`);
  });
});

describe('TcpTransport: lifecycle', () => {
  it('start() rejects with the address when the port is taken', async () => {
    const a = await cluster.start('a');
    const b = new TcpTransport({
      nodeId: 'b',
      listen: { host: '127.0.0.1', port: a.transport.port },
      resolve: () => undefined,
      onMessage: () => {},
    });
    await expect(b.start()).rejects.toThrow(`cannot listen on 127.0.0.1:${a.transport.port}`);
    await b.close();
  });

  it('removePeer closes the link and drops its queue; a later send dials again', async () => {
    const a = await cluster.start('a');
    const b = await cluster.start('b');
    a.transport.send('b', 'g', seqMessage('a', 'b', 0));
    await waitUntil('the first message', () => b.received.length === 1);
    a.transport.removePeer('b');
    expect(a.transport.stats().peers.b).toBeUndefined();
    await waitUntil('b to see a leave', () => b.transport.stats().inboundPeers.length === 0);
    a.transport.send('b', 'g', seqMessage('a', 'b', 1));
    await waitUntil('the second message', () => b.received.length === 2);
    expect(a.transport.stats().connectionsOpened).toBe(2);
    expect(a.transport.stats().connectionsLost).toBe(0);
  });
});

describe('parsePeerAddress', () => {
  it('parses host:port and [v6]:port, and refuses the rest', () => {
    expect(parsePeerAddress('127.0.0.1:7000')).toEqual({ host: '127.0.0.1', port: 7000 });
    expect(parsePeerAddress('broker-2:7000')).toEqual({ host: 'broker-2', port: 7000 });
    expect(parsePeerAddress('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
    for (const bad of ['', 'host', 'host:', ':7000', 'host:0', 'host:65536', '::1:7000', 'a b:1']) {
      expect(parsePeerAddress(bad), bad).toBeUndefined();
    }
  });
});

describe('TcpTransport: options', () => {
  it('refuses nonsensical options', () => {
    const base = { nodeId: 'a', listen: { host: '127.0.0.1', port: 0 }, resolve: () => undefined, onMessage: () => {} };
    expect(() => new TcpTransport({ ...base, reconnectBackoffMs: { min: 100, max: 10 } })).toThrow(/backoff/i);
    expect(() => new TcpTransport({ ...base, pingIntervalMs: 1000, deadPeerTimeoutMs: 500 })).toThrow(/deadPeerTimeoutMs/);
    expect(() => new TcpTransport({ ...base, nodeId: '' })).toThrow(/nodeId/);
  });
});
