// One PostgreSQL server, supervised by the postgres node: initdb on an empty
// data directory, our settings, start, wait until it answers queries, stop.
//
// Settings (dvote.conf, rewritten at every start and included from
// postgresql.conf): listen on the node's pg address, max_connections 200,
// fsync, synchronous_commit and full_page_writes ON (an acknowledged vote is
// on disk: durability is the point), shared_buffers 128MB, no Unix socket
// (TCP only: socket paths under deep state folders pass the 107-byte limit),
// no parallel query (docker's 64 MB /dev/shm), UTC.
//
// Authentication (pg_hba.conf): trust for TCP from loopback and from the
// networks this server is directly attached to ("samenet": the cluster's
// docker bridge, through which published ports arrive too), nothing else.
// The trade-off: anyone who can open a connection to a PostgreSQL port is
// its superuser. The ports are bound to 127.0.0.1 (process runtime) or live
// on the cluster's private bridge and are published on 127.0.0.1 only
// (docker), so that is anyone with a shell on this machine, who can read the
// data files anyway. A deployment across machines needs scram-sha-256 with a
// generated password (and TLS) instead.
//
// Lifetime: PostgreSQL is started through `setpriv --pdeathsig KILL` (and,
// as root, --reuid/--regid to the PostgreSQL user), so a SIGKILLed node
// takes its server down with it, as a killed container does. Should one
// survive anyway (no setpriv), the next start finds it by postmaster.pid and
// stops it first.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import { appendFile, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import pg from 'pg';
import type { Logger } from '../common/logger.js';
import { giveTo, prepareDataDir, type PgOsUser } from './pg-os-user.js';
import { PG_DATABASE, PG_USER, pgConnection } from './pg-schema.js';

export interface PgServerOptions {
  binDir: string;
  /** The PostgreSQL data directory (PGDATA). */
  dataDir: string;
  listen: { host: string; port: number };
  user: PgOsUser;
  log: Logger;
  /** Extra or overriding postgresql.conf settings. */
  settings?: Record<string, string | number>;
}

export const DEFAULT_PG_SETTINGS: Record<string, string | number> = {
  max_connections: 200,
  shared_buffers: '128MB',
  fsync: 'on',
  synchronous_commit: 'on',
  full_page_writes: 'on',
  wal_level: 'replica',
  unix_socket_directories: "''",
  max_parallel_workers_per_gather: 0,
  timezone: "'UTC'",
  log_timezone: "'UTC'",
  logging_collector: 'off',
  log_destination: "'stderr'",
  log_line_prefix: "'%m [%p] '",
};

const PG_HBA = `# Written by dvote (see src/services/postgres/pg-server.ts for the trade-off).
# TYPE  DATABASE  USER  ADDRESS        METHOD
host    all       all   127.0.0.1/32   trust
host    all       all   ::1/128        trust
host    all       all   samenet        trust
`;

const SETPRIV_PATHS = ['/usr/bin/setpriv', '/bin/setpriv'];

/** The folder holding postgres and initdb: DVOTE_PG_BIN, else a system install, else PATH. */
export function findPgBinDir(): string | null {
  const has = (dir: string) => existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'));
  const env = process.env.DVOTE_PG_BIN;
  if (env) return has(env) ? env : null;
  const candidates: string[] = [];
  for (const root of ['/usr/lib/postgresql', '/usr/pgsql']) {
    try {
      const versions = existsSync(root) ? readdirSync(root) : [];
      for (const v of versions.sort((a, b) => Number(b) - Number(a))) candidates.push(join(root, v, 'bin'));
    } catch {
      // unreadable: skip
    }
  }
  candidates.push('/usr/local/pgsql/bin');
  for (const p of (process.env.PATH ?? '').split(':')) if (p) candidates.push(p);
  return candidates.find(has) ?? null;
}

export class PgStartError extends Error {}

export class PgServer {
  private child: ChildProcess | null = null;
  private stopping = false;
  private exitListeners: ((code: number | null, signal: string | null) => void)[] = [];
  private recentLines: string[] = [];
  readonly pgdata: string;
  startedAt: number | null = null;
  version: string | null = null;

  constructor(private readonly o: PgServerOptions) {
    this.pgdata = o.dataDir;
  }

  get pid(): number | null {
    return this.child?.pid ?? null;
  }

  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Called when the server exits while it was not being stopped. */
  onUnexpectedExit(cb: (code: number | null, signal: string | null) => void): void {
    this.exitListeners.push(cb);
  }

  /** The last lines PostgreSQL wrote (for error messages). */
  lastLines(): string[] {
    return [...this.recentLines];
  }

  /** initdb when the data directory holds no cluster; returns true when it ran. */
  async ensureInitialized(): Promise<boolean> {
    const { log, user } = this.o;
    await prepareDataDir(this.pgdata, user, log);
    if (existsSync(join(this.pgdata, 'PG_VERSION'))) return false;
    // A half-made cluster (initdb interrupted) is not data: start again.
    const leftovers = await readdir(this.pgdata);
    if (leftovers.length > 0) {
      log.warn({ dir: this.pgdata, files: leftovers.length }, 'data directory has files but no PG_VERSION (an interrupted initdb?); starting it over');
      for (const f of leftovers) await rm(join(this.pgdata, f), { recursive: true, force: true });
    }
    const t0 = performance.now();
    await this.runTool('initdb', [
      '-D',
      this.pgdata,
      '-U',
      PG_USER,
      '--auth=trust',
      '--encoding=UTF8',
      '--locale=C',
    ]);
    log.info({ ms: Math.round(performance.now() - t0), dir: this.pgdata }, 'initdb made a new PostgreSQL cluster');
    return true;
  }

  /** Write dvote.conf and pg_hba.conf (every start, so new settings apply to old data). */
  async writeConfig(): Promise<void> {
    const settings: Record<string, string | number> = {
      ...DEFAULT_PG_SETTINGS,
      listen_addresses: `'${this.o.listen.host === '0.0.0.0' ? '*' : this.o.listen.host}'`,
      port: this.o.listen.port,
      ...(this.o.settings ?? {}),
    };
    const text = ['# Written by dvote at every start; edits are lost.', ...Object.entries(settings).map(([k, v]) => `${k} = ${v}`), ''].join('\n');
    const confFile = join(this.pgdata, 'dvote.conf');
    await writeFile(confFile, text, { mode: 0o600 });
    await giveTo(confFile, this.o.user);
    const main = join(this.pgdata, 'postgresql.conf');
    const current = await readFile(main, 'utf8');
    if (!/^include_if_exists = 'dvote\.conf'/m.test(current)) {
      await appendFile(main, "\n# dvote's settings (rewritten at every start)\ninclude_if_exists = 'dvote.conf'\n");
    }
    const hba = join(this.pgdata, 'pg_hba.conf');
    await writeFile(hba, PG_HBA, { mode: 0o600 });
    await giveTo(hba, this.o.user);
  }

  /** Start the server and wait until it answers a query (crash recovery included). */
  async start(timeoutMs = 120_000): Promise<void> {
    await this.stopOrphan();
    const { log } = this.o;
    let lastError: Error | null = null;
    // A server killed a moment ago may still have backends attached to its
    // shared memory; PostgreSQL refuses to start until they are gone.
    for (let attempt = 1; attempt <= 5; attempt++) {
      this.spawnServer();
      try {
        await this.waitReady(timeoutMs);
        this.startedAt = Date.now();
        log.info({ pid: this.pid, port: this.o.listen.port, version: this.version }, 'PostgreSQL is accepting connections');
        return;
      } catch (e) {
        lastError = e as Error;
        if (this.running) throw e;
        log.warn({ attempt, err: lastError.message }, 'PostgreSQL did not start; retrying');
        await sleep(500 * attempt);
      }
    }
    throw new PgStartError(`PostgreSQL would not start: ${lastError?.message ?? 'unknown'}; last output: ${this.recentLines.slice(-5).join(' | ')}`);
  }

  /** Fast shutdown (SIGINT): ends sessions, checkpoints, exits. SIGKILL after timeoutMs. */
  async stop(timeoutMs = 4_000): Promise<void> {
    const c = this.child;
    if (!c || !this.running) return;
    this.stopping = true;
    const exited = new Promise<void>((r) => c.once('exit', () => r()));
    c.kill('SIGINT');
    const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(t);
    this.o.log.info('PostgreSQL stopped');
  }

  private setprivArgs(): string[] | null {
    const setpriv = SETPRIV_PATHS.find((p) => existsSync(p));
    if (!setpriv) return null;
    const u = this.o.user;
    return [setpriv, ...(u.switched ? [`--reuid=${u.uid}`, `--regid=${u.gid}`, '--clear-groups'] : []), '--pdeathsig', 'KILL', '--'];
  }

  private spawnWith(program: string, args: string[]): ChildProcess {
    const env = { ...process.env, LC_ALL: 'C', LANG: 'C' } as NodeJS.ProcessEnv;
    delete env.DVOTE_CONFIG;
    const wrap = this.setprivArgs();
    const u = this.o.user;
    if (wrap) return spawn(wrap[0]!, [...wrap.slice(1), program, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    return spawn(program, args, { env, stdio: ['ignore', 'pipe', 'pipe'], ...(u.switched ? { uid: u.uid, gid: u.gid } : {}) });
  }

  private runTool(tool: string, args: string[]): Promise<void> {
    return new Promise((resolveTool, reject) => {
      const c = this.spawnWith(join(this.o.binDir, tool), args);
      let out = '';
      c.stdout?.on('data', (d: Buffer) => (out += d.toString()));
      c.stderr?.on('data', (d: Buffer) => (out += d.toString()));
      c.on('error', (e) => reject(new PgStartError(`${tool} could not run: ${e.message}`)));
      c.on('exit', (code, signal) => {
        if (code === 0) resolveTool();
        else reject(new PgStartError(`${tool} failed (${signal ?? `code ${code}`}): ${out.trim().split('\n').slice(-6).join(' | ')}`));
      });
    });
  }

  private spawnServer(): void {
    const c = this.spawnWith(join(this.o.binDir, 'postgres'), ['-D', this.pgdata]);
    this.child = c;
    this.stopping = false;
    const onLine = (line: string) => {
      this.recentLines.push(line);
      if (this.recentLines.length > 50) this.recentLines.shift();
      this.o.log.info({ pg: line }, 'postgres');
    };
    createInterface({ input: c.stdout! }).on('line', onLine);
    createInterface({ input: c.stderr! }).on('line', onLine);
    c.on('error', (e) => this.o.log.error({ err: e.message }, 'postgres could not run'));
    c.on('exit', (code, signal) => {
      if (this.child === c) this.child = null;
      if (this.stopping) return;
      this.o.log.error({ code, signal, last: this.recentLines.slice(-5) }, 'PostgreSQL exited unexpectedly');
      for (const l of this.exitListeners) l(code, signal);
    });
  }

  private async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const host = this.o.listen.host === '0.0.0.0' ? '127.0.0.1' : this.o.listen.host;
    let last = '';
    while (Date.now() < deadline) {
      if (!this.running) throw new PgStartError(`postgres exited during start: ${this.recentLines.slice(-3).join(' | ')}`);
      const client = new pg.Client({ ...pgConnection(`${host}:${this.o.listen.port}`, 'dvote-postgres-node'), database: 'postgres', connectionTimeoutMillis: 1_000 });
      client.on('error', () => undefined);
      try {
        await client.connect();
        const r = await client.query<{ v: string }>("SELECT current_setting('server_version') AS v");
        this.version = r.rows[0]?.v ?? null;
        const db = await client.query('SELECT 1 FROM pg_database WHERE datname = $1', [PG_DATABASE]);
        if (db.rowCount === 0) await client.query(`CREATE DATABASE ${PG_DATABASE}`);
        return;
      } catch (e) {
        last = (e as Error).message;
      } finally {
        await client.end().catch(() => undefined);
      }
      await sleep(100);
    }
    throw new PgStartError(`PostgreSQL did not accept connections within ${timeoutMs} ms (last: ${last})`);
  }

  /**
   * Clear the way for a new server on this data directory: stop a server left
   * running by an earlier incarnation of the node, and remove a postmaster.pid
   * whose pid is a zombie (a killed server nobody has reaped yet) or now
   * belongs to another program: PostgreSQL would take either for a live
   * postmaster and refuse to start. (Its shared-memory interlock still
   * protects against backends of a dead server that are still running.)
   */
  private async stopOrphan(): Promise<void> {
    const pidFile = join(this.pgdata, 'postmaster.pid');
    let pid: number;
    try {
      pid = Number((await readFile(pidFile, 'utf8')).split('\n')[0]);
    } catch {
      return;
    }
    if (!Number.isInteger(pid) || pid <= 0) return;
    const removeLock = async (why: string) => {
      this.o.log.warn({ pid }, `removing postmaster.pid: ${why}`);
      await rm(pidFile, { force: true });
    };
    const state = await procState(pid);
    if (state === 'missing') return; // PostgreSQL removes a stale pid file itself
    if (state === 'zombie') return removeLock('its server is dead (not yet reaped)');
    let cmdline = '';
    try {
      cmdline = (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0/g, ' ');
    } catch {
      return;
    }
    if (pid === process.pid || !cmdline.includes('postgres') || !cmdline.includes(this.pgdata)) {
      return removeLock(`pid ${pid} is another program now`);
    }
    this.o.log.warn({ pid }, 'a PostgreSQL from an earlier run still serves this data directory; stopping it');
    const gone = async () => (await procState(pid)) !== 'alive';
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      return;
    }
    const deadline = Date.now() + 10_000;
    while (!(await gone()) && Date.now() < deadline) await sleep(50);
    if (!(await gone())) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      while (!(await gone()) && Date.now() < deadline + 5_000) await sleep(50);
    }
    if ((await procState(pid)) === 'zombie') await removeLock('its server is dead (not yet reaped)');
  }
}

/** Whether a process exists, and whether it is a zombie (from /proc/<pid>/stat). */
async function procState(pid: number): Promise<'missing' | 'zombie' | 'alive'> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state === 'Z' || state === 'X' ? 'zombie' : 'alive';
  } catch {
    return 'missing';
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
