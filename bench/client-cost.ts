// What the load generator's HTTP client costs per request, two ways side by
// side: undici's `request()` (what VoteClient used before) and `jsonCall`
// (undici's dispatcher, what VoteClient and the HTTP floor use now), against
// the HTTP floor's no-op vote service in another process. Rounds alternate
// A/B so that the machine's noise falls on both.
//
//   npx tsx bench/client-cost.ts [rounds=3] [seconds=5] [concurrency=64]
import { fork } from 'node:child_process';
import { join } from 'node:path';
import { Agent, request } from 'undici';
import { jsonCall } from '../src/client/http-call.js';
import { runClosedLoop } from './lib/closed-loop.js';

const rounds = Number(process.argv[2] ?? 3);
const seconds = Number(process.argv[3] ?? 5);
const concurrency = Number(process.argv[4] ?? 64);
for (const [name, v] of [['rounds', rounds], ['seconds', seconds], ['concurrency', concurrency]] as const) {
  if (!Number.isInteger(v) || v < 1 || v > 1_000) {
    console.error(`client-cost: ${name} must be an integer from 1 to 1000 (usage: npx tsx bench/client-cost.ts [rounds] [seconds] [concurrency])`);
    process.exit(2);
  }
}

const server = fork(join(import.meta.dirname, 'lib', 'http-floor-server.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
const port = await new Promise<number>((resolve, reject) => {
  server.once('message', (m) => resolve((m as { port: number }).port));
  server.once('exit', (code) => reject(new Error(`the no-op vote service exited (${code}) before listening`)));
});
const origin = `http://127.0.0.1:${port}`;

type Call = (agent: Agent, voterId: number) => Promise<{ status: number; voterId: unknown }>;
const clients: Record<string, Call> = {
  request: async (agent, voterId) => {
    const res = await request(`${origin}/votes`, {
      method: 'POST',
      dispatcher: agent,
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ voterId, choice: 'bob' }),
    });
    const body = JSON.parse(await res.body.text()) as { voterId?: unknown };
    return { status: res.statusCode, voterId: body.voterId };
  },
  jsonCall: async (agent, voterId) => {
    const a = await jsonCall(agent, { origin, path: '/votes', method: 'POST', body: { voterId, choice: 'bob' }, timeoutMs: 10_000 });
    return { status: a.status, voterId: a.body.voterId };
  },
};

const rows: { client: string; round: number; reqPerSec: number; cpuUsPerReq: number }[] = [];
let seqBase = 1;
try {
  for (let round = 1; round <= rounds; round++) {
    for (const name of round % 2 ? ['request', 'jsonCall'] : ['jsonCall', 'request']) {
      const agent = new Agent({ connections: concurrency, keepAliveTimeout: 30_000, pipelining: 1 });
      // CPU and operations from the end of the warm-up to the end of the run.
      let ops = 0;
      let from = { cpu: process.cpuUsage(), ops: 0 };
      const mark = setTimeout(() => (from = { cpu: process.cpuUsage(), ops }), 2_000);
      const r = await runClosedLoop({
        concurrency,
        warmupMs: 2_000,
        durationMs: seconds * 1000,
        seqBase,
        op: async (worker, seq) => {
          const voterId = worker * 10_000_000 + seq;
          const a = await clients[name]!(agent, voterId);
          if (a.status !== 201 || a.voterId !== voterId) throw new Error(`HTTP ${a.status}, voterId ${String(a.voterId)}`);
          ops++;
        },
      });
      seqBase = r.nextSeq;
      const cpu = process.cpuUsage(from.cpu);
      clearTimeout(mark);
      await agent.close();
      const row = { client: name, round, reqPerSec: Math.round(r.opsPerSec), cpuUsPerReq: Math.round((cpu.user + cpu.system) / Math.max(1, ops - from.ops)) };
      rows.push(row);
      console.log(`round ${round} ${name.padEnd(8)} ${String(row.reqPerSec).padStart(6)} req/s  client CPU ${row.cpuUsPerReq} us/request${r.errors ? `  (${r.errors} errors)` : ''}`);
    }
  }
} finally {
  server.kill();
}
const mean = (c: string, k: 'reqPerSec' | 'cpuUsPerReq') => rows.filter((r) => r.client === c).reduce((s, r) => s + r[k], 0) / rounds;
console.log(
  `jsonCall / request: CPU per request ${(mean('jsonCall', 'cpuUsPerReq') / mean('request', 'cpuUsPerReq')).toFixed(2)}x, ` +
    `requests/s ${(mean('jsonCall', 'reqPerSec') / mean('request', 'reqPerSec')).toFixed(2)}x (means of ${rounds} rounds, ${concurrency} in flight)`,
);
