// Side by side on the process runtime: the nodes' event-loop lag sampled
// every 10 ms (prom-client's default, what dvote used before) against 250 ms
// (now), alternating, two rounds. Per run: the idle cluster's CPU and
// wake-ups over 10 s, then one vote per request at 128 in flight (3 s
// warm-up, verified).
//   npx tsx bench/idle-ab.ts [--seconds 12]     (after npm run build)
// Writes bench/results/idle-ab.json.
import { execa } from 'execa';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { sampleLoad } from './lib/machine-load.js';
import { measureTree } from './lib/proc-cpu.js';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin/dvote.js');
const args = process.argv.slice(2);
const i = args.indexOf('--seconds');
const seconds = i >= 0 ? Number(args[i + 1]) : 12;
if (!Number.isInteger(seconds) || seconds < 1) {
  console.error(`error: --seconds must be a whole number >= 1, not "${args[i + 1]}" (e.g. --seconds 12)`);
  process.exit(2);
}
const cluster = 'idleab';

async function dvote(a: string[], env: Record<string, string> = {}): Promise<string> {
  const r = await execa(process.execPath, [bin, '--cluster', cluster, ...a], { reject: false, timeout: 600_000, env: { ...process.env, ...env, NO_COLOR: '1' } });
  if (r.exitCode !== 0) throw new Error(`dvote ${a.join(' ')} failed (${r.exitCode}): ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

const runs: Record<string, unknown>[] = [];
await dvote(['down', '--volumes', '-q']).catch(() => undefined);
for (const round of [1, 2]) {
  for (const sampleMs of ['10', '250']) {
    await dvote(['up', '--runtime', 'process', '-q'], { DVOTE_EVENT_LOOP_SAMPLE_MS: sampleMs });
    try {
      await new Promise((r) => setTimeout(r, 3000));
      const idle = await measureTree(new RegExp(`clusters/${cluster}/`), 10_000);
      const b = JSON.parse(await dvote(['bench', '--warmup', '3s', '--duration', `${seconds}s`, '--concurrency', '128', '--json'])) as {
        throughput: { votesPerSec: number };
        latencyMs: { p50: number; p99: number };
        verify: { ok: boolean; lost: number; duplicated: number; divergent: number };
      };
      const run = { round, eventLoopSampleMs: Number(sampleMs), idle, votesPerSec: b.throughput.votesPerSec, latencyMs: b.latencyMs, verify: b.verify, load: sampleLoad() };
      runs.push(run);
      console.log(
        `round ${round} sample ${sampleMs.padStart(3)} ms: idle cluster ${idle.cores} cores, ${idle.wakeupsPerSec} wake-ups/s (${idle.processes} processes); ` +
          `c128 ${b.throughput.votesPerSec} votes/s p50 ${b.latencyMs.p50} p99 ${b.latencyMs.p99} ms; verify ${b.verify.ok} (lost ${b.verify.lost}); load ${run.load.load1}`,
      );
    } finally {
      await dvote(['down', '--volumes', '-q']);
    }
  }
}
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/idle-ab.json'), `${JSON.stringify({ startedAt: new Date().toISOString(), command: `npx tsx bench/idle-ab.ts ${args.join(' ')}`.trim(), seconds, runs }, null, 2)}\n`);
