// A three-server NATS JetStream cluster of Debian's nats-server on
// 127.0.0.1, the peer the broker log is measured against (PEERS.md): each
// server has `jetstream { store_dir }` and a `cluster { routes }` naming all
// three; the bench creates an R3 file stream. By default JetStream fsyncs
// periodically (every 2 minutes) and acknowledges before the data is on disk;
// `syncAlways` sets `sync_interval: always` (fsync on every write, as dvote's
// brokers), which needs nats-server 2.10: bookworm's 2.9 has no
// sync_interval, so scripts/install-peers.sh puts trixie's 2.10 build in
// /opt/dvote-peers (NATS_210_BINARY).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { freePort } from '../../test/utils/manager-processes.js';
import { reapOnExit } from './child-reaper.js';
import { sleep } from './wait-until.js';

export interface NatsServer {
  name: string;
  clientPort: number;
  clusterPort: number;
  monitorPort: number;
  child: ChildProcess | null;
}

export const NATS_210_BINARY = '/opt/dvote-peers/nats-server-2.10.27/nats-server';

export interface NatsClusterOptions {
  binary?: string;
  /** `sync_interval: always`: fsync before every acknowledgement (nats-server >= 2.10). */
  syncAlways?: boolean;
}

export function natsVersion(binary = 'nats-server'): string | null {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return r.stdout.trim();
}

export class NatsCluster {
  readonly servers: NatsServer[] = [];
  private readonly unreap: () => void;

  private constructor(readonly baseDir: string) {
    this.unreap = reapOnExit(() => this.servers.map((s) => s.child), [baseDir]);
  }

  static async start(size = 3, opts: NatsClusterOptions = {}): Promise<NatsCluster> {
    const binary = opts.binary ?? 'nats-server';
    if (!natsVersion(binary)) throw new Error(`${binary} not found: install it with bash scripts/install-peers.sh`);
    const c = new NatsCluster(mkdtempSync(join(tmpdir(), 'dvote-bench-nats-')));
    try {
      for (let i = 1; i <= size; i++) {
        c.servers.push({ name: `nats-${i}`, clientPort: await freePort(), clusterPort: await freePort(), monitorPort: await freePort(), child: null });
      }
      for (const s of c.servers) {
        const dir = join(c.baseDir, s.name);
        mkdirSync(dir, { recursive: true });
        const routes = c.servers.filter((x) => x !== s).map((x) => `nats-route://127.0.0.1:${x.clusterPort}`);
        const conf = [
          `server_name: ${s.name}`,
          `listen: 127.0.0.1:${s.clientPort}`,
          `http: 127.0.0.1:${s.monitorPort}`,
          `jetstream { store_dir: "${join(dir, 'js')}"${opts.syncAlways ? ', sync_interval: always' : ''} }`,
          `cluster { name: dvote-bench, listen: 127.0.0.1:${s.clusterPort}, routes: [${routes.map((r) => `"${r}"`).join(', ')}] }`,
        ].join('\n');
        const confFile = join(dir, 'nats.conf');
        writeFileSync(confFile, conf);
        const fd = openSync(join(c.baseDir, `${s.name}.log`), 'a');
        s.child = spawn(binary, ['-c', confFile], { stdio: ['ignore', fd, fd] });
      }
      await c.waitForJetStream(30_000);
      return c;
    } catch (e) {
      await c.stop();
      throw e;
    }
  }

  urls(): string[] {
    return this.servers.map((s) => `127.0.0.1:${s.clientPort}`);
  }

  /** JetStream answers account info once its meta group has a leader. */
  private async waitForJetStream(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      let nc: NatsConnection | null = null;
      try {
        nc = await connect({ servers: this.urls(), timeout: 1000 });
        const jsm = await nc.jetstreamManager({ timeout: 2000 });
        await jsm.getAccountInfo();
        return;
      } catch (e) {
        last = (e as Error).message;
        await sleep(300);
      } finally {
        await nc?.close().catch(() => undefined);
      }
    }
    throw new Error(`NATS JetStream not ready within ${timeoutMs} ms: ${last}`);
  }

  async stop(): Promise<void> {
    for (const s of this.servers) s.child?.kill('SIGKILL');
    await sleep(100);
    rmSync(this.baseDir, { recursive: true, force: true });
    this.unreap();
  }
}
