// A three-member (or N-member) etcd cluster of Debian's etcd-server on
// 127.0.0.1, the peer the Raft managers are measured against. Settings as in
// the shared PEERS.md: distinct client and peer ports, heartbeat 100 ms,
// election timeout 1000 ms (etcd's defaults, spelled out), one data dir each,
// fsync on (etcd always fsyncs its WAL before acknowledging).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Etcd3, type IOptions } from 'etcd3';
import { noop } from 'cockatiel';
import { freePort } from '../../test/utils/manager-processes.js';
import { reapOnExit } from './child-reaper.js';
import { sleep, waitUntil } from './wait-until.js';

export interface EtcdMember {
  name: string;
  clientUrl: string;
  peerUrl: string;
  dataDir: string;
  logFile: string;
  child: ChildProcess | null;
}

export interface EtcdClusterOptions {
  size: number;
  heartbeatMs?: number;
  electionMs?: number;
  binary?: string;
}

/** Client options without etcd3's retries and circuit breakers: a probe must see each failure as it happens. */
export function directEtcdOptions(hosts: string | string[], deadlineMs: number): IOptions {
  return {
    hosts,
    dialTimeout: deadlineMs,
    defaultCallOptions: (ctx) => (ctx.isStream ? {} : { deadline: Date.now() + deadlineMs }),
    faultHandling: { host: () => noop, global: noop },
  };
}

export function etcdVersion(binary = 'etcd'): string | null {
  const r = spawnSync(binary, ['--version'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return null;
  return r.stdout.split('\n')[0]?.replace('etcd Version: ', '').trim() ?? null;
}

export class EtcdCluster {
  readonly members: EtcdMember[] = [];
  private readonly statusClients = new Map<string, Etcd3>();
  private readonly unreap: () => void;

  private constructor(
    readonly baseDir: string,
    private readonly opts: Required<EtcdClusterOptions>,
  ) {
    this.unreap = reapOnExit(() => this.members.map((m) => m.child), [baseDir]);
  }

  static async start(options: EtcdClusterOptions): Promise<EtcdCluster> {
    const opts = { heartbeatMs: 100, electionMs: 1000, binary: 'etcd', ...options };
    if (!etcdVersion(opts.binary)) {
      throw new Error(`${opts.binary} not found or not runnable: install it with bash scripts/install-peers.sh`);
    }
    const c = new EtcdCluster(mkdtempSync(join(tmpdir(), 'dvote-bench-etcd-')), opts);
    try {
      for (let i = 1; i <= opts.size; i++) {
        const name = `etcd-${i}`;
        c.members.push({
          name,
          clientUrl: `http://127.0.0.1:${await freePort()}`,
          peerUrl: `http://127.0.0.1:${await freePort()}`,
          dataDir: join(c.baseDir, name),
          logFile: join(c.baseDir, `${name}.log`),
          child: null,
        });
      }
      for (const m of c.members) c.spawn(m);
      await c.waitForLeader(30_000);
      return c;
    } catch (e) {
      await c.stop();
      throw e;
    }
  }

  private spawn(m: EtcdMember): void {
    const cluster = this.members.map((x) => `${x.name}=${x.peerUrl}`).join(',');
    const args = [
      '--name', m.name,
      '--data-dir', m.dataDir,
      '--listen-client-urls', m.clientUrl,
      '--advertise-client-urls', m.clientUrl,
      '--listen-peer-urls', m.peerUrl,
      '--initial-advertise-peer-urls', m.peerUrl,
      '--initial-cluster', cluster,
      '--initial-cluster-state', 'new',
      '--initial-cluster-token', `dvote-bench-${process.pid}`,
      '--heartbeat-interval', String(this.opts.heartbeatMs),
      '--election-timeout', String(this.opts.electionMs),
      '--logger', 'zap',
      '--log-level', 'warn',
    ];
    const fd = openSync(m.logFile, 'a');
    m.child = spawn(this.opts.binary, args, { stdio: ['ignore', fd, fd] });
  }

  endpoints(): string[] {
    return this.members.map((m) => m.clientUrl);
  }

  member(name: string): EtcdMember {
    const m = this.members.find((x) => x.name === name);
    if (!m) throw new Error(`no etcd member ${name}`);
    return m;
  }

  /** A client bound to one member, without retries (for status and probes). */
  clientFor(m: EtcdMember): Etcd3 {
    let c = this.statusClients.get(m.name);
    if (!c) {
      c = new Etcd3(directEtcdOptions(m.clientUrl, 500));
      this.statusClients.set(m.name, c);
    }
    return c;
  }

  /** The member every live member that answers names as leader (maintenance status API), or null. */
  async leader(): Promise<EtcdMember | null> {
    const live = this.members.filter((m) => m.child);
    const statuses = await Promise.all(
      live.map(async (m) => {
        try {
          return { m, s: await this.clientFor(m).maintenance.status() };
        } catch {
          return null;
        }
      }),
    );
    for (const st of statuses) {
      if (st && st.s.leader !== '0' && st.s.leader === st.s.header.member_id) return st.m;
    }
    return null;
  }

  async waitForLeader(timeoutMs: number, not?: string): Promise<EtcdMember> {
    return waitUntil(`an etcd leader${not ? ` other than ${not}` : ''} (logs in ${this.baseDir})`, timeoutMs, async () => {
      const l = await this.leader();
      return l && l.name !== not ? l : null;
    });
  }

  /** Raft applied index of a member, or null when it does not answer. */
  async appliedIndex(m: EtcdMember): Promise<number | null> {
    try {
      const s = await this.clientFor(m).maintenance.status();
      return Number(s.raftAppliedIndex);
    } catch {
      return null;
    }
  }

  async raftIndex(m: EtcdMember): Promise<number | null> {
    try {
      const s = await this.clientFor(m).maintenance.status();
      return Number(s.raftIndex);
    } catch {
      return null;
    }
  }

  kill(name: string, signal: NodeJS.Signals = 'SIGKILL'): void {
    const m = this.member(name);
    m.child?.kill(signal);
    m.child = null;
    // The old connection is to a dead process; a fresh client reconnects cleanly after restart.
    this.statusClients.get(name)?.close();
    this.statusClients.delete(name);
  }

  restart(name: string): void {
    const m = this.member(name);
    if (m.child) throw new Error(`${name} is running`);
    // With its data dir in place, etcd ignores the --initial-cluster flags and rejoins.
    this.spawn(m);
  }

  async stop(): Promise<void> {
    for (const c of this.statusClients.values()) c.close();
    this.statusClients.clear();
    const waits: Promise<unknown>[] = [];
    for (const m of this.members) {
      const child = m.child;
      if (!child) continue;
      if (child.exitCode === null && child.signalCode === null) {
        waits.push(new Promise((r) => child.once('exit', r)));
        child.kill('SIGKILL');
      }
      m.child = null;
    }
    await Promise.race([Promise.all(waits), sleep(5_000)]);
    this.unreap();
    rmSync(this.baseDir, { recursive: true, force: true });
  }
}
