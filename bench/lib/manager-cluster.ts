// The dvote managers as real processes for the benchmark: the bundled node
// program (dist/services/node-main.js) copied to a private directory first,
// so the run measures one fixed build even if someone rebuilds dist/ while it
// runs. Same configuration as test/utils/manager-processes.ts, plus what a
// benchmark needs: every child reaped at exit, Prometheus counters read back.
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { NodeConfig } from '../../src/services/common/node-config.js';
import { NODE_MAIN, freePort } from '../../test/utils/manager-processes.js';
import { reapOnExit } from './child-reaper.js';
import { sleep, waitUntil } from './wait-until.js';

export interface BenchManager {
  id: string;
  http: string;
  raftPort: number;
  dataDir: string;
  logFile: string;
  child: ChildProcess | null;
}

export interface ManagerHealth {
  id: string;
  state: string;
  leader: string | null;
  term: number;
  commitIndex: number;
  appliedIndex: number;
}

export class ManagerCluster {
  readonly members: BenchManager[] = [];
  private readonly unreap: () => void;

  private constructor(
    readonly baseDir: string,
    private readonly bundle: string,
    private readonly timing?: NodeConfig['timing'],
  ) {
    this.unreap = reapOnExit(() => this.members.map((m) => m.child), [baseDir]);
  }

  static async start(opts: { size: number; timing?: NodeConfig['timing'] }): Promise<ManagerCluster> {
    if (!existsSync(NODE_MAIN)) throw new Error(`${NODE_MAIN} is missing: run npm run build first`);
    const base = mkdtempSync(join(tmpdir(), 'dvote-bench-managers-'));
    mkdirSync(join(base, 'bundle'));
    const bundle = join(base, 'bundle', 'node-main.js');
    copyFileSync(NODE_MAIN, bundle);
    const c = new ManagerCluster(base, bundle, opts.timing);
    try {
      for (let i = 1; i <= opts.size; i++) {
        c.members.push({
          id: `manager-${i}`,
          http: `127.0.0.1:${await freePort()}`,
          raftPort: await freePort(),
          dataDir: join(base, `manager-${i}`),
          logFile: join(base, `manager-${i}.log`),
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

  private spawn(m: BenchManager): void {
    const config: NodeConfig = {
      cluster: 'bench',
      id: m.id,
      role: 'manager',
      dataDir: m.dataDir,
      listen: { host: '127.0.0.1', httpPort: Number(m.http.split(':')[1]), raftPort: m.raftPort },
      advertise: { http: m.http, raft: `127.0.0.1:${m.raftPort}` },
      managers: this.members.map((x) => ({ id: x.id, http: x.http, raft: `127.0.0.1:${x.raftPort}` })),
      bootstrap: true,
      logLevel: 'warn',
      ...(this.timing ? { timing: this.timing } : {}),
    };
    const fd = openSync(m.logFile, 'a');
    m.child = spawn(process.execPath, [this.bundle], {
      env: { ...process.env, DVOTE_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', fd, fd],
    });
  }

  member(id: string): BenchManager {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no manager ${id}`);
    return m;
  }

  async health(m: BenchManager): Promise<ManagerHealth | null> {
    try {
      const res = await fetch(`http://${m.http}/health`, { signal: AbortSignal.timeout(500) });
      return (await res.json()) as ManagerHealth;
    } catch {
      return null;
    }
  }

  async leader(): Promise<BenchManager | null> {
    const hs = await Promise.all(this.members.filter((m) => m.child).map((m) => this.health(m)));
    const l = hs.find((h) => h?.state === 'leader');
    return l ? this.member(l.id) : null;
  }

  async waitForLeader(timeoutMs: number, not?: string): Promise<BenchManager> {
    return waitUntil(`a manager leader${not ? ` other than ${not}` : ''} (logs in ${this.baseDir})`, timeoutMs, async () => {
      const l = await this.leader();
      return l && l.id !== not ? l : null;
    });
  }

  /** Every member up, agreeing on the leader, and applied up to the leader's commit index. */
  async waitCaughtUp(timeoutMs: number): Promise<BenchManager> {
    return waitUntil(`every manager caught up with the leader (logs in ${this.baseDir})`, timeoutMs, async () => {
      const hs = await Promise.all(this.members.map((m) => this.health(m)));
      const leader = hs.find((h) => h?.state === 'leader');
      if (!leader) return null;
      const ok = hs.every((h) => h && h.leader === leader.id && h.appliedIndex >= leader.commitIndex);
      return ok ? this.member(leader.id) : null;
    });
  }

  /** The member's Prometheus metrics, summed over label sets, by metric name. */
  async metrics(m: BenchManager): Promise<Map<string, number>> {
    const res = await fetch(`http://${m.http}/metrics`, { signal: AbortSignal.timeout(5_000) });
    return parsePrometheus(await res.text());
  }

  async status(m: BenchManager): Promise<Record<string, unknown>> {
    const res = await fetch(`http://${m.http}/v1/status`, { signal: AbortSignal.timeout(5_000) });
    return (await res.json()) as Record<string, unknown>;
  }

  kill(id: string, signal: NodeJS.Signals = 'SIGKILL'): void {
    const m = this.member(id);
    m.child?.kill(signal);
    m.child = null;
  }

  restart(id: string): void {
    const m = this.member(id);
    if (m.child) throw new Error(`${id} is running`);
    this.spawn(m);
  }

  async stop(): Promise<void> {
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

/** Prometheus text format → metric name → sum of its samples over every label set. */
export function parsePrometheus(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m) continue;
    const v = Number(m[3]);
    if (Number.isFinite(v)) out.set(m[1]!, (out.get(m[1]!) ?? 0) + v);
  }
  return out;
}
