// In-process probe of one Raft group's commit latency (3 hosts, real disks,
// real TCP on loopback, no HTTP): where the time of a write goes.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RaftHost } from '../src/raft/host/raft-host.js';
import { ManagerState } from '../src/services/manager/manager-state.js';
import { encodeKvCommand } from '../src/raft/kv/kv-state-machine.js';
import { freePort } from '../test/utils/manager-processes.js';
const base = mkdtempSync(join(tmpdir(), 'rh-'));
const ports = [await freePort(), await freePort(), await freePort()];
const ids = ['a', 'b', 'c'];
const peers = Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
const hosts = ids.map((id, i) => new RaftHost({ nodeId: id, listen: { host: '127.0.0.1', port: ports[i]! }, peers }));
await Promise.all(hosts.map((h) => h.start()));
const groups = hosts.map((h, i) => h.addGroup({ group: 'g', dir: join(base, ids[i]!), stateMachine: new ManagerState(), bootstrap: { voters: ids } }));
while (!groups.some((g) => g.isLeader)) await new Promise((r) => setTimeout(r, 10));
const L = groups.find((g) => g.isLeader)!;
for (const conc of [1, 64]) {
  let n = 0; const t0 = performance.now(); const lat: number[] = [];
  await Promise.all(Array.from({ length: conc }, async (_, i) => { while (performance.now() - t0 < 3000) { const s = performance.now(); await L.propose(encodeKvCommand({ op: 'put', key: `k${i}`, value: 'x'.repeat(100) })); lat.push(performance.now() - s); n++; } }));
  lat.sort((a, b) => a - b);
  console.log(`in-process raft, concurrency ${conc}: ${Math.round(n / 3)} commits/s, p50 ${lat[lat.length >> 1]!.toFixed(2)} ms, p99 ${lat[Math.floor(lat.length * 0.99)]!.toFixed(2)} ms`);
}
for (const h of hosts) await h.stop();
rmSync(base, { recursive: true, force: true });
