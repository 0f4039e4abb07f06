// Micro benchmark of the Raft transport: two TcpTransports in one process on
// loopback, A sending append messages to B across 50 groups.
//
//   npx tsx bench/raft-transport.ts [--seconds 3] [--window-bytes 4000000] [--json]
//
// Both ends share one event loop (and one core), so the figures are a lower
// bound for two processes. The sender keeps at most `window` messages in
// flight (sent but not yet received) so that the bounded queue never drops.
import type { Entry, Message } from '../src/raft/core/types.js';
import { TcpTransport } from '../src/raft/transport/tcp-transport.js';

interface CaseResult {
  name: string;
  entriesPerMessage: number;
  entryBytes: number;
  seconds: number;
  messages: number;
  entries: number;
  messagesPerSec: number;
  entriesPerSec: number;
  payloadMBPerSec: number;
  wireMBPerSec: number;
  avgMessagesPerWrite: number;
  dropped: number;
}

const GROUPS = 50;

function argValue(name: string, fallback: string): string {
  const i = process.argv.indexOf(name);
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback;
}

async function runCase(name: string, entriesPerMessage: number, entryBytes: number, seconds: number): Promise<CaseResult> {
  let received = 0;
  let receivedEntries = 0;
  const b = new TcpTransport({
    nodeId: 'b',
    listen: { host: '127.0.0.1', port: 0 },
    resolve: () => undefined,
    onMessage: (_group, msg) => {
      received++;
      receivedEntries += msg.entries?.length ?? 0;
    },
  });
  await b.start();
  const a = new TcpTransport({
    nodeId: 'a',
    listen: { host: '127.0.0.1', port: 0 },
    resolve: (peer) => (peer === 'b' ? `127.0.0.1:${b.port}` : undefined),
    onMessage: () => {},
  });
  await a.start();

  const groups = Array.from({ length: GROUPS }, (_, i) => `partition-${i}`);
  const nextIndex = new Array<number>(GROUPS).fill(1);
  const payload = new Uint8Array(entryBytes).fill(0x61);
  const windowBytes = Number(argValue('--window-bytes', '4000000'));
  const window = Math.max(64, Math.floor(windowBytes / (entriesPerMessage * (entryBytes + 8) + 20)));
  const perTurn = Math.max(16, Math.floor(window / 8));
  let sent = 0;

  const makeMessage = (g: number): Message => {
    const first = nextIndex[g]!;
    const entries: Entry[] = new Array<Entry>(entriesPerMessage);
    for (let i = 0; i < entriesPerMessage; i++) entries[i] = { term: 3, index: first + i, type: 0, data: payload };
    nextIndex[g] = first + entriesPerMessage;
    return { type: 'app', from: 'a', to: 'b', term: 3, logTerm: 3, index: first - 1, commit: first - 1, entries };
  };

  const before = { ...a.stats() };
  const start = performance.now();
  const deadline = start + seconds * 1000;
  await new Promise<void>((resolve) => {
    const pump = () => {
      if (performance.now() >= deadline) return resolve();
      for (let i = 0; i < perTurn && sent - received < window; i++) {
        const g = sent % GROUPS;
        a.send('b', groups[g]!, makeMessage(g));
        sent++;
      }
      setImmediate(pump);
    };
    pump();
  });
  // Let what is in flight arrive so that sent and received agree.
  const drainDeadline = performance.now() + 5000;
  while (received < sent - a.stats().droppedMessages && performance.now() < drainDeadline) {
    await new Promise((r) => setImmediate(r));
  }
  const elapsed = (performance.now() - start) / 1000;
  const after = a.stats();
  await a.close();
  await b.close();
  const wireBytes = after.sentBytes - before.sentBytes;
  return {
    name,
    entriesPerMessage,
    entryBytes,
    seconds: Number(elapsed.toFixed(2)),
    messages: received,
    entries: receivedEntries,
    messagesPerSec: Math.round(received / elapsed),
    entriesPerSec: Math.round(receivedEntries / elapsed),
    payloadMBPerSec: Number(((receivedEntries * entryBytes) / elapsed / 1e6).toFixed(1)),
    wireMBPerSec: Number((wireBytes / elapsed / 1e6).toFixed(1)),
    avgMessagesPerWrite: Math.round((after.sentMessages - before.sentMessages) / Math.max(1, after.sentWrites - before.sentWrites)),
    dropped: after.droppedMessages,
  };
}

/** One message a -> b and its answer b -> a, one at a time: the transport's share of a commit's latency. */
async function runRoundTrips(seconds: number): Promise<{ roundTrips: number; p50Us: number; p99Us: number; maxUs: number }> {
  const addresses = new Map<string, string>();
  let onAnswer: () => void = () => {};
  const b: TcpTransport = new TcpTransport({
    nodeId: 'b',
    listen: { host: '127.0.0.1', port: 0 },
    resolve: (peer) => addresses.get(peer),
    onMessage: (group, msg) => b.send('a', group, { type: 'appResp', from: 'b', to: 'a', term: msg.term, index: msg.index ?? 0 }),
  });
  const a = new TcpTransport({
    nodeId: 'a',
    listen: { host: '127.0.0.1', port: 0 },
    resolve: (peer) => addresses.get(peer),
    onMessage: () => onAnswer(),
  });
  await a.start();
  await b.start();
  addresses.set('a', `127.0.0.1:${a.port}`);
  addresses.set('b', `127.0.0.1:${b.port}`);
  const payload = new Uint8Array(100);
  const samples: number[] = [];
  const deadline = performance.now() + seconds * 1000;
  for (let i = 1; performance.now() < deadline && samples.length < 200_000; i++) {
    const t0 = performance.now();
    await new Promise<void>((resolve) => {
      onAnswer = resolve;
      a.send('b', 'g', { type: 'app', from: 'a', to: 'b', term: 1, index: i, entries: [{ term: 1, index: i, type: 0, data: payload }] });
    });
    if (i > 100) samples.push((performance.now() - t0) * 1000); // skip connection setup and warm-up
  }
  await a.close();
  await b.close();
  samples.sort((x, y) => x - y);
  const at = (q: number) => Math.round(samples[Math.min(samples.length - 1, Math.floor(q * samples.length))] ?? 0);
  return { roundTrips: samples.length, p50Us: at(0.5), p99Us: at(0.99), maxUs: Math.round(samples.at(-1) ?? 0) };
}

async function main(): Promise<void> {
  const seconds = Number(argValue('--seconds', '3'));
  if (!(seconds > 0 && seconds <= 30)) throw new Error('--seconds must be in (0, 30]');
  const results = [
    await runCase('1 x 100 B entry per message', 1, 100, seconds),
    await runCase('64 x 100 B entries per message', 64, 100, seconds),
  ];
  const latency = await runRoundTrips(Math.min(seconds, 2));
  if (process.argv.includes('--json')) {
    const doc = { schema: 'dvote.bench-raft-transport/v1', node: process.version, results, latency };
    process.stdout.write(`${JSON.stringify(doc, null, 2)}\n`);
    return;
  }
  process.stdout.write(`raft transport, loopback, one process (${process.version}), ${GROUPS} groups\n`);
  for (const r of results) {
    process.stdout.write(
      `${r.name.padEnd(32)} ${String(r.messagesPerSec).padStart(9)} msg/s ${String(r.entriesPerSec).padStart(10)} entries/s ` +
        `${String(r.payloadMBPerSec).padStart(6)} MB/s payload ${String(r.wireMBPerSec).padStart(6)} MB/s wire ` +
        `~${r.avgMessagesPerWrite} msg/write dropped=${r.dropped} (${r.messages} msgs in ${r.seconds}s)\n`,
    );
  }
  process.stdout.write(
    `round trip, 1 message each way       p50 ${latency.p50Us} us  p99 ${latency.p99Us} us  max ${latency.maxUs} us (${latency.roundTrips} round trips)\n`,
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exitCode = 1;
});
