// Quick probe: latency and throughput of BrokerClient.append with vote-sized
// messages, the shard service's pattern (a few batches in flight).
import { execa } from 'execa';
import { BrokerClient } from '../src/client/broker-client.js';
const env = { ...process.env, DVOTE_STATE_DIR: '/tmp/dv-ap' };
await execa('node', ['bin/dvote.js', '--cluster', 'ap', 'down', '--volumes', '-q'], { env, reject: false });
await execa('node', ['bin/dvote.js', '--cluster', 'ap', 'up', '--runtime', 'process', '--managers', '1', '--brokers', '3', '--shards', '0', '-q'], { env });
const st = JSON.parse((await execa('node', ['bin/dvote.js', '--cluster', 'ap', 'status', '--json'], { env })).stdout);
const managers = st.nodes.filter((n: any) => n.role === 'manager').map((n: any) => n.endpoint.replace('http://', ''));
const c = new BrokerClient({ managers });
await c.createTopic('probe', { partitions: 1, replicationFactor: 3 });
for (const [inflight, batch] of [[1, 1], [1, 100], [4, 100], [16, 100]] as const) {
  const msgs = Array.from({ length: batch }, (_, i) => `1234567890,${i % 3},1732200000000,1`);
  const lat: number[] = []; let n = 0; const t0 = performance.now();
  await Promise.all(Array.from({ length: inflight }, async () => { while (performance.now() - t0 < 4000) { const s = performance.now(); await c.append('probe', 0, msgs); lat.push(performance.now() - s); n += batch; } }));
  lat.sort((a, b) => a - b);
  console.log(`in flight ${inflight}, ${batch}/append: ${Math.round(n / 4)} msgs/s, ${Math.round(lat.length / 4)} appends/s, p50 ${lat[lat.length >> 1]!.toFixed(2)} ms, p99 ${lat[Math.floor(lat.length * 0.99)]!.toFixed(2)} ms`);
}
await c.close();
await execa('node', ['bin/dvote.js', '--cluster', 'ap', 'down', '--volumes', '-q'], { env, reject: false });
