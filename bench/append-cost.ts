// What one append to a partition costs the brokers in CPU: a fresh process
// cluster (1 manager, 3 brokers), one partition with 3 replicas, vote-sized
// messages appended for a few seconds at 1 and at 4 in flight, and each
// broker's CPU read from /proc/<pid>/stat before and after (the idle cost,
// measured first, is shown beside it, not subtracted).
//   npx tsx bench/append-cost.ts [seconds]     (after npm run build; Linux)
import { readFileSync } from 'node:fs';
import { execa } from 'execa';
import { BrokerClient } from '../src/client/broker-client.js';
import { ProcessRuntime } from '../src/runtime/process.js';

const seconds = Number(process.argv[2] ?? '5');
if (!Number.isFinite(seconds) || seconds < 1 || seconds > 60) {
  console.error('error: seconds must be a number from 1 to 60 (e.g. npx tsx bench/append-cost.ts 5)');
  process.exit(2);
}
const cluster = 'appendcost';
const env = { ...process.env, DVOTE_STATE_DIR: '/tmp/dvote-append-cost' };
const dvote = (...args: string[]) => execa('node', ['bin/dvote.js', '--cluster', cluster, ...args], { env, reject: false });

const ticksOf = (pid: string): number => {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime + stime, in 1/100 s
};

await dvote('down', '--volumes', '-q');
const up = await dvote('up', '--runtime', 'process', '--managers', '1', '--brokers', '3', '--shards', '0', '-q');
if (up.exitCode !== 0) {
  console.error(`error: dvote up failed: ${up.stderr.split('\n').slice(-3).join(' ')}`);
  process.exit(1);
}
try {
  process.env.DVOTE_STATE_DIR = env.DVOTE_STATE_DIR;
  const nodes = await new ProcessRuntime().listNodes(cluster);
  const brokers = nodes.filter((n) => n.role === 'broker').map((n) => ({ name: n.name, pid: n.runtimeId }));
  const managers = nodes.filter((n) => n.role === 'manager').map((n) => n.endpoint.replace('http://', ''));
  const client = new BrokerClient({ managers });
  await client.createTopic('cost', { partitions: 1, replicationFactor: 3 });
  await client.append('cost', 0, ['warm']);
  const vote = ['1234567890,1,1732200000000,1'];
  for (const inFlight of [0, 1, 4]) {
    const before = brokers.map((b) => ticksOf(b.pid));
    const t0 = performance.now();
    let appends = 0;
    if (inFlight === 0) await new Promise((r) => setTimeout(r, seconds * 1000));
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() - t0 < seconds * 1000) {
          await client.append('cost', 0, vote);
          appends++;
        }
      }),
    );
    const secs = (performance.now() - t0) / 1000;
    const cores = brokers.map((b, i) => (ticksOf(b.pid) - before[i]!) / 100 / secs);
    const total = cores.reduce((a, b) => a + b, 0);
    const perAppend = appends > 0 ? `${((total / (appends / secs)) * 1000).toFixed(2)} ms of broker CPU per append` : 'idle';
    console.log(
      `${inFlight} in flight: ${(appends / secs).toFixed(0)} appends/s; broker cores ${brokers.map((b, i) => `${b.name} ${cores[i]!.toFixed(3)}`).join(', ')}; ${perAppend}`,
    );
  }
  await client.close();
} finally {
  await dvote('down', '--volumes', '-q');
}
