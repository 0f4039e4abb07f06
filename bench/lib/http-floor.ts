// The HTTP floor: how many votes per second one HTTP request per vote can
// reach on this machine when the service behind it does nothing but parse,
// check and answer (http-floor-server.ts, one process per shard, like the
// shard services). The client is undici with one kept-alive connection per
// request in flight and the same call as dvote bench's VoteClient (http-call.ts). No system that
// answers every vote with its own HTTP request, replicated or not, can go
// faster than this on the same cores; bench/votes.ts prints it beside dvote.
import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { Agent } from 'undici';
import { jsonCall } from '../../src/client/http-call.js';
import { runClosedLoop, type ClosedLoopResult } from './closed-loop.js';

export interface HttpFloorResult extends ClosedLoopResult {
  servers: number;
  /** CPU of the client process per request, microseconds. */
  clientCpuUsPerRequest: number;
}

export async function measureHttpFloor(o: { servers: number; concurrency: number; seconds: number; warmupSeconds: number }): Promise<HttpFloorResult> {
  const children: ChildProcess[] = [];
  const agent = new Agent({ connections: o.concurrency, keepAliveTimeout: 30_000, pipelining: 1 });
  try {
    const ports = await Promise.all(
      Array.from({ length: o.servers }, () => {
        const child = fork(join(import.meta.dirname, 'http-floor-server.ts'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        children.push(child);
        return new Promise<number>((resolve, reject) => {
          child.once('message', (m) => resolve((m as { port: number }).port));
          child.once('exit', (code) => reject(new Error(`the HTTP floor server exited (${code}) before listening`)));
        });
      }),
    );
    const origins = ports.map((p) => `http://127.0.0.1:${p}`);
    const cpu0 = process.cpuUsage();
    const r = await runClosedLoop({
      concurrency: o.concurrency,
      warmupMs: o.warmupSeconds * 1000,
      durationMs: o.seconds * 1000,
      seqBase: 1,
      op: async (worker, seq) => {
        const voterId = worker * 10_000_000 + seq;
        const res = await jsonCall(agent, { origin: origins[voterId % origins.length]!, path: '/votes', method: 'POST', body: { voterId, choice: 'bob' }, timeoutMs: 10_000 });
        if (res.status !== 201 || res.body.voterId !== voterId) throw new Error(`HTTP ${res.status}: ${JSON.stringify(res.body).slice(0, 120)}`);
      },
    });
    const cpu = process.cpuUsage(cpu0);
    const requests = r.completed + r.errors;
    return { ...r, servers: o.servers, clientCpuUsPerRequest: Math.round((cpu.user + cpu.system) / Math.max(1, requests)) };
  } finally {
    await agent.close().catch(() => undefined);
    for (const c of children) c.kill();
  }
}
