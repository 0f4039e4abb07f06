// Time from `dvote up` to ready (a manager leader and every member on the
// latest configuration), for 3 and 5 managers, on the docker and process
// runtimes, with the image already cached; and the image build, warm and
// (with --cold) cold.
//
//   npx tsx bench/up-time.ts [--runs 3] [--cold] [--runtimes docker,process]
//
// Every figure comes from the CLI's own `up --json` phase timings, so it is
// what a user sees. Results: bench/results/up-time.json.
import { execa } from 'execa';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { homedir, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(import.meta.dirname, '..');
const bin = join(root, 'bin/dvote.js');
const args = process.argv.slice(2);
const arg = (n: string, d: string) => {
  const i = args.indexOf(n);
  return i >= 0 ? args[i + 1]! : d;
};
const runs = Number(arg('--runs', '3'));
const runtimes = arg('--runtimes', 'docker,process').split(',');
const cold = args.includes('--cold');
const stateDir = mkdtempSync(join(tmpdir(), 'dvote-bench-up-'));

async function dvote(a: string[]): Promise<Record<string, unknown>> {
  const r = await execa(process.execPath, [bin, ...a], { env: { ...process.env, DVOTE_STATE_DIR: stateDir, NO_COLOR: '1' }, reject: false, timeout: 600_000 });
  if (r.exitCode !== 0) throw new Error(`dvote ${a.join(' ')} failed (${r.exitCode}): ${r.stderr.slice(-2000)}`);
  return r.stdout.trim().startsWith('{') ? (JSON.parse(r.stdout) as Record<string, unknown>) : {};
}

function stats(xs: number[]): { min: number; median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { min: s[0]!, median: s[Math.floor(s.length / 2)]!, max: s[s.length - 1]! };
}

const results: Record<string, unknown> = { machine: { loadavg: loadavg(), when: new Date().toISOString() } };

if (runtimes.includes('docker')) {
  if (cold) {
    // Cold: no cached base rootfs, Node tarball or images.
    rmSync(join(homedir(), '.cache/dvote'), { recursive: true, force: true });
    const imgs = await execa('docker', ['images', '-q', '--filter', 'reference=dvote-*']);
    const ids = imgs.stdout.split('\n').filter(Boolean);
    if (ids.length) await execa('docker', ['rmi', '-f', ...new Set(ids)], { reject: false });
    const t0 = performance.now();
    const doc = await dvote(['images', 'build', '--json']);
    results.imageCold = { ms: Math.round(performance.now() - t0), phases: doc.phases };
    console.log(`image build, cold: ${((performance.now() - t0) / 1000).toFixed(1)} s`, JSON.stringify(doc.phases));
  }
  const warm: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await dvote(['images', 'build', '--json']);
    warm.push(performance.now() - t0);
  }
  results.imageWarm = stats(warm);
  console.log(`image build, warm (cached; whole CLI invocation): ${JSON.stringify(stats(warm.map(Math.round)))} ms`);
}

for (const rt of runtimes) {
  for (const managers of [3, 5]) {
    const totals: number[] = [];
    const ready: number[] = [];
    for (let i = 0; i < runs; i++) {
      const cluster = `upb${managers}${rt[0]}`;
      const t0 = performance.now();
      const doc = await dvote(['--cluster', cluster, 'up', '--runtime', rt, '--managers', String(managers), '--brokers', '0', '--shards', '0', '--json']);
      const wall = performance.now() - t0;
      const phases = doc.phases as { name: string; ms: number }[];
      const startPhase = phases.find((p) => p.name === 'start managers');
      totals.push(wall);
      ready.push(startPhase?.ms ?? NaN);
      await dvote(['--cluster', cluster, 'down', '--volumes']);
    }
    const key = `${rt}-${managers}`;
    results[key] = { wallMs: stats(totals.map(Math.round)), startManagersMs: stats(ready) };
    console.log(`${rt}, ${managers} managers: up to ready (wall) ${JSON.stringify(stats(totals.map(Math.round)))} ms; of which starting managers until ready ${JSON.stringify(stats(ready))} ms`);
  }
}

rmSync(stateDir, { recursive: true, force: true });
mkdirSync(join(root, 'bench/results'), { recursive: true });
writeFileSync(join(root, 'bench/results/up-time.json'), `${JSON.stringify(results, null, 2)}\n`);
console.log(`load average at the end: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
