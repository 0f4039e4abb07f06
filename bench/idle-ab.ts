// Side by side on the process runtime, two settings of the nodes that change
// how often an idle cluster wakes up:
//   --compare eventloop   prom-client's event-loop lag sampled every 10 ms
//                         (its default, what dvote used before) against 250 ms
//   --compare raft-tick   Raft ticks of 25 ms (heartbeat every 2 ticks,
//                         elections after 10-20) against 50 ms (1, 5-10): the
//                         same 50 ms heartbeats and 250-500 ms election timeout
// Rounds alternate which setting goes first (AB, BA, AB, ...), so that an
// order effect (the second cluster of a pair inherits a warmer machine)
// falls on both. Per run: a fresh default cluster, its idle CPU and
// wake-ups over 10 s (every process of the cluster, from /proc), then one
// vote per request at 128 in flight (3 s warm-up, verified).
//   npx tsx bench/idle-ab.ts --compare raft-tick [--rounds 3] [--seconds 12]   (after npm run build)
// Writes bench/results/idle-ab-<compare>.json.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { sampleLoad } from './lib/machine-load.js';
import { measureTree } from './lib/proc-cpu.js';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin/dvote.js');
const args = process.argv.slice(2);
const opt = (n: string, d: string) => {
  const i = args.indexOf(n);
  return i >= 0 ? (args[i + 1] ?? '') : d;
};
const whole = (n: string, d: string) => {
  const v = Number(opt(n, d));
  if (!Number.isInteger(v) || v < 1) {
    console.error(`error: ${n} must be a whole number >= 1, not "${opt(n, d)}" (e.g. ${n} ${d})`);
    process.exit(2);
  }
  return v;
};
const seconds = whole('--seconds', '12');
const rounds = whole('--rounds', '3');
const compare = opt('--compare', '');

interface Setting {
  name: string;
  env: Record<string, string>;
  topology: string;
}
const SETTINGS: Record<string, [Setting, Setting]> = {
  eventloop: [
    { name: 'event-loop sample 10 ms', env: { DVOTE_EVENT_LOOP_SAMPLE_MS: '10' }, topology: '' },
    { name: 'event-loop sample 250 ms', env: { DVOTE_EVENT_LOOP_SAMPLE_MS: '250' }, topology: '' },
  ],
  'raft-tick': [
    { name: 'raft tick 25 ms', env: {}, topology: 'timing:\n  tickMs: 25\n  heartbeatTick: 2\n  electionTick: 10\n' },
    { name: 'raft tick 50 ms', env: {}, topology: 'timing:\n  tickMs: 50\n  heartbeatTick: 1\n  electionTick: 5\n' },
  ],
};
const pair = SETTINGS[compare];
if (!pair) {
  console.error(`error: --compare must be one of ${Object.keys(SETTINGS).join(', ')} (e.g. --compare raft-tick)`);
  process.exit(2);
}

const cluster = 'idleab';
async function dvote(a: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await execa(process.execPath, [bin, '--cluster', cluster, ...a], { reject: false, timeout: 600_000, env: { ...process.env, ...env, NO_COLOR: '1' } });
  if (r.exitCode !== 0) throw new Error(`dvote ${a.join(' ')} failed (${r.exitCode}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

const dir = mkdtempSync(join(tmpdir(), 'idle-ab-'));
const runs: Record<string, unknown>[] = [];
try {
  await dvote(['down', '--volumes', '-q']).catch(() => undefined);
  for (let round = 1; round <= rounds; round++) {
    const order = round % 2 === 1 ? pair : ([pair[1], pair[0]] as const);
    for (const s of order) {
      const file = join(dir, 'topology.yaml');
      writeFileSync(file, `cluster: ${cluster}\n${s.topology}`);
      await dvote(['up', '-f', file, '--runtime', 'process', '-q'], s.env);
      try {
        await new Promise((r) => setTimeout(r, 3000));
        const idle = await measureTree(new RegExp(`clusters/${cluster}/`), 10_000);
        const b = JSON.parse(await dvote(['bench', '--warmup', '3s', '--duration', `${seconds}s`, '--concurrency', '128', '--json'])) as {
          throughput: { votesPerSec: number };
          latencyMs: { p50: number; p99: number };
          verify: { ok: boolean; lost: number; duplicated: number; divergent: number };
        };
        const run = { round, setting: s.name, idle, votesPerSec: b.throughput.votesPerSec, latencyMs: b.latencyMs, verify: b.verify, load: sampleLoad() };
        runs.push(run);
        console.log(
          `round ${round} ${s.name.padEnd(26)}: idle cluster ${idle.cores} cores, ${idle.wakeupsPerSec} wake-ups/s; ` +
            `c128 ${b.throughput.votesPerSec} votes/s p50 ${b.latencyMs.p50} p99 ${b.latencyMs.p99} ms; verify ${b.verify.ok} (lost ${b.verify.lost}); load ${run.load.load1}`,
        );
      } finally {
        await dvote(['down', '--volumes', '-q']);
      }
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
const mean = (name: string, f: (r: Record<string, unknown>) => number) => {
  const xs = runs.filter((r) => r.setting === name).map(f);
  return Math.round((xs.reduce((a, b) => a + b, 0) / xs.length) * 10) / 10;
};
for (const s of pair) {
  console.log(`${s.name}: mean ${mean(s.name, (r) => r.votesPerSec as number)} votes/s, ${mean(s.name, (r) => (r.idle as { wakeupsPerSec: number }).wakeupsPerSec)} idle wake-ups/s`);
}
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(
  join(root, `bench/results/idle-ab-${compare}.json`),
  `${JSON.stringify({ finishedAt: new Date().toISOString(), command: `npx tsx bench/idle-ab.ts ${args.join(' ')}`.trim(), compare, seconds, rounds, runs }, null, 2)}\n`,
);
