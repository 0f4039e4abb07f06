// Real manager processes on 127.0.0.1 for tests and benchmarks: each is the
// bundled node program (dist/services/node-main.js) started with its own data
// directory and ports, killable with real signals.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { NodeConfig } from '../../src/services/common/node-config.js';

export const NODE_MAIN = resolve(import.meta.dirname, '../../dist/services/node-main.js');

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => res(port));
    });
  });
}

export interface ManagerProcess {
  id: string;
  httpPort: number;
  raftPort: number;
  http: string;
  dataDir: string;
  child: ChildProcess | null;
  logFile: string;
}

export interface ManagerClusterOptions {
  size: number;
  timing?: NodeConfig['timing'];
  baseDir?: string;
}

export class ManagerProcesses {
  readonly members: ManagerProcess[] = [];
  readonly baseDir: string;

  private constructor(
    baseDir: string,
    private readonly timing?: NodeConfig['timing'],
  ) {
    this.baseDir = baseDir;
  }

  static async start(opts: ManagerClusterOptions): Promise<ManagerProcesses> {
    if (!existsSync(NODE_MAIN)) throw new Error(`${NODE_MAIN} is missing: run npm run build first`);
    const base = opts.baseDir ?? mkdtempSync(join(tmpdir(), 'dvote-managers-'));
    const c = new ManagerProcesses(base, opts.timing);
    for (let i = 1; i <= opts.size; i++) {
      const httpPort = await freePort();
      const raftPort = await freePort();
      c.members.push({
        id: `manager-${i}`,
        httpPort,
        raftPort,
        http: `127.0.0.1:${httpPort}`,
        dataDir: join(base, `manager-${i}`),
        child: null,
        logFile: join(base, `manager-${i}.log`),
      });
    }
    for (const m of c.members) c.spawn(m);
    try {
      await c.waitForLeader(20_000);
    } catch (e) {
      await c.stop({ keepData: true });
      throw e;
    }
    return c;
  }

  private config(m: ManagerProcess): NodeConfig {
    return {
      cluster: 'test',
      id: m.id,
      role: 'manager',
      dataDir: m.dataDir,
      listen: { host: '127.0.0.1', httpPort: m.httpPort, raftPort: m.raftPort },
      advertise: { http: m.http, raft: `127.0.0.1:${m.raftPort}` },
      managers: this.members.map((x) => ({ id: x.id, http: x.http, raft: `127.0.0.1:${x.raftPort}` })),
      bootstrap: true,
      logLevel: 'warn',
      ...(this.timing ? { timing: this.timing } : {}),
    };
  }

  spawn(m: ManagerProcess): void {
    const fd = openSync(m.logFile, 'a');
    m.child = spawn(process.execPath, [NODE_MAIN], {
      env: { ...process.env, DVOTE_CONFIG: JSON.stringify(this.config(m)) },
      stdio: ['ignore', fd, fd],
    });
  }

  endpoints(): string[] {
    return this.members.map((m) => m.http);
  }

  member(id: string): ManagerProcess {
    const m = this.members.find((x) => x.id === id);
    if (!m) throw new Error(`no member ${id}`);
    return m;
  }

  async health(m: ManagerProcess): Promise<Record<string, unknown> | null> {
    try {
      const res = await fetch(`http://${m.http}/health`, { signal: AbortSignal.timeout(500) });
      return (await res.json()) as Record<string, unknown>;
    } catch {
      return null;
    }
  }

  /** The id of the leader that a majority of live members agree on. */
  async leader(): Promise<string | null> {
    const hs = await Promise.all(this.members.filter((m) => m.child).map((m) => this.health(m)));
    const votes = new Map<string, number>();
    for (const h of hs) {
      if (h && h.state === 'leader') return String(h.id);
      if (h?.leader) votes.set(String(h.leader), (votes.get(String(h.leader)) ?? 0) + 1);
    }
    return null;
  }

  async waitForLeader(timeoutMs: number, not?: string): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const l = await this.leader();
      if (l && l !== not) return l;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(`no leader${not ? ` other than ${not}` : ''} within ${timeoutMs} ms (logs in ${this.baseDir})`);
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

  async stop(opts: { keepData?: boolean } = {}): Promise<void> {
    const waits: Promise<void>[] = [];
    for (const m of this.members) {
      const c = m.child;
      m.child = null;
      if (!c || c.exitCode !== null || c.signalCode !== null) continue; // already gone: no 'exit' will come
      waits.push(new Promise((r) => c.once('exit', () => r())));
      c.kill('SIGKILL');
    }
    await Promise.all(waits);
    if (!opts.keepData) rmSync(this.baseDir, { recursive: true, force: true });
  }
}
