// Replay one simulator seed (or a range) from the command line, with a trace:
//   npx tsx test/raft/sim/replay.ts --seed 1234 [--trace] [--count 100]
import { simOptionsForSeed } from './scenarios.js';
import { checkSeed } from './check-seed.js';

const args = process.argv.slice(2);
const get = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const seed = Number(get('--seed') ?? '1');
const count = Number(get('--count') ?? '1');
const trace = args.includes('--trace');
const workload = get('--workload') as 'kv' | 'bank' | undefined;
let failed = 0;
const t0 = performance.now();
let events = 0;
for (let s = seed; s < seed + count; s++) {
  const opts = simOptionsForSeed(s);
  const out = checkSeed({ ...opts, ...(workload ? { workload } : {}), ...(trace ? { trace: (l: string) => console.log(l) } : {}) });
  if (out.result) events += out.result.stats.events;
  if (count === 1 && out.result) console.log(JSON.stringify(out.result.stats));
  if (!out.ok) {
    failed++;
    console.log(`seed=${s} FAILED: ${out.problem}`);
  }
}
const ms = performance.now() - t0;
console.log(`${count} seeds from ${seed}: ${failed} failed, ${events} events, ${ms.toFixed(0)} ms (${(ms / count).toFixed(1)} ms/seed)`);
process.exitCode = failed > 0 ? 1 : 0;
