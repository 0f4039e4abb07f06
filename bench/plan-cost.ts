// What planning the vote batch at every execution costs the primary, side by
// side: connections with plan_cache_mode = force_custom_plan (the shard
// service until revision 9d639a2) against the service's connections now
// (PRIMARY_SESSION_OPTIONS: sequential scans off, the generic plan cached).
// A temporary PostgreSQL (the postgres role's own code), 300,000 stored
// votes, then batches of 12 votes (one stored voter among them, as a repeat
// voter), one connection at a time; the backend's CPU from /proc.
//
//   npx tsx bench/plan-cost.ts [batches=3000] [rounds=2]
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { pgConnection, setFence } from '../src/services/postgres/pg-schema.js';
import { PRIMARY_SESSION_OPTIONS } from '../src/services/shard/primary-connection.js';
import { BATCH_SQL } from '../src/services/shard/vote-store.js';
import { startTempPostgres } from '../test/utils/temp-postgres.js';

const batches = Number(process.argv[2] ?? 3000);
const rounds = Number(process.argv[3] ?? 2);
if (!Number.isInteger(batches) || batches < 10 || batches > 1_000_000 || !Number.isInteger(rounds) || rounds < 1 || rounds > 20) {
  console.error('plan-cost: batches must be 10..1000000 and rounds 1..20 (usage: npx tsx bench/plan-cost.ts [batches] [rounds])');
  process.exit(2);
}
const STORED = 300_000;
const settings = { 'force_custom_plan (before)': '-c plan_cache_mode=force_custom_plan', 'service now': PRIMARY_SESSION_OPTIONS };

const db = await startTempPostgres({ settings: { synchronous_commit: 'off' } });
try {
  const setup = new pg.Client(pgConnection(db.address, 'plan-cost'));
  await setup.connect();
  await setFence(setup, 'primary', 1);
  await setup.query(`INSERT INTO votes (voter_id, choice, cast_at) SELECT g, 1, now() FROM generate_series(1, ${STORED}) g`);
  await setup.query('ANALYZE votes');
  await setup.end();
  let next = 10_000_000;
  const batch = (repeat: number) => Array.from({ length: 12 }, (_, k) => (k === 0 ? 1 + (repeat % STORED) : next++));
  const q = { name: 'batch', text: BATCH_SQL(true) };
  const sums: Record<string, number[]> = {};
  for (let round = 1; round <= rounds; round++) {
    const names = Object.keys(settings);
    for (const name of round % 2 ? names : names.reverse()) {
      const c = new pg.Client({ ...pgConnection(db.address, 'plan-cost'), options: settings[name as keyof typeof settings] });
      await c.connect();
      const pid = (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
      const cpuMs = () => {
        const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        return (Number(f[11]) + Number(f[12])) * 10; // clock ticks of 10 ms
      };
      const run = async (n: number) => {
        for (let i = 0; i < n; i++) {
          const ids = batch(i);
          await c.query({ ...q, values: [1, ids, ids.map(() => 2), Date.now() * 1000] });
        }
      };
      await run(200); // past the custom plans plan_cache_mode=auto tries first
      const t0 = performance.now();
      const cpu0 = cpuMs();
      await run(batches);
      const wallUs = ((performance.now() - t0) / batches) * 1000;
      const cpuUs = ((cpuMs() - cpu0) / batches) * 1000;
      (sums[name] ??= []).push(cpuUs);
      console.log(`round ${round} ${name.padEnd(27)} ${wallUs.toFixed(0).padStart(5)} us per batch (wall), backend CPU ${cpuUs.toFixed(0)} us per batch`);
      await c.end();
    }
  }
  const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const [a, b] = Object.keys(settings);
  console.log(`backend CPU per batch, ${b} / ${a}: ${(mean(sums[b!]!) / mean(sums[a!]!)).toFixed(2)} (means of ${rounds} rounds)`);
} finally {
  await db.stop();
}
