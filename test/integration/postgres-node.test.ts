// The 'postgres' role as a real process: the bundled node program
// (dist/services/node-main.js, as both runtimes run it) supervising a real
// PostgreSQL: initdb as a non-root user, durable settings, the schema, /health,
// a clean SIGTERM, a crash of PostgreSQL making the node exit non-zero, a
// SIGKILLed node taking its PostgreSQL with it, and data surviving all of it.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { request } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countNow } from '../../src/cli/commands/report.js';
import { createLogger } from '../../src/services/common/logger.js';
import type { NodeConfig } from '../../src/services/common/node-config.js';
import { pgOsUser } from '../../src/services/postgres/pg-os-user.js';
import { PgServer } from '../../src/services/postgres/pg-server.js';
import { pgConnection, SCHEMA_VERSION } from '../../src/services/postgres/pg-schema.js';
import { freePort, testPgBinDir } from '../utils/temp-postgres.js';

const NODE_MAIN = resolve(import.meta.dirname, '../../dist/services/node-main.js');
const dir = mkdtempSync(join(tmpdir(), 'dvote-pgnode-'));
let httpPort = 0;
let pgPort = 0;
let config: NodeConfig;
const children: ChildProcess[] = [];

function startNode(): { child: ChildProcess; exited: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [NODE_MAIN], {
    env: { ...process.env, DVOTE_CONFIG: JSON.stringify(config), DVOTE_PG_BIN: testPgBinDir() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, output: () => out };
}

async function health(): Promise<{ status: number; body: Record<string, unknown> } | null> {
  try {
    const res = await request(`http://127.0.0.1:${httpPort}/health`, { headersTimeout: 1000, bodyTimeout: 1000 });
    return { status: res.statusCode, body: (await res.body.json()) as Record<string, unknown> };
  } catch {
    return null;
  }
}

async function until<T>(what: string, f: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function query<T extends pg.QueryResultRow>(sql: string, params: unknown[] = []): Promise<T[]> {
  const c = new pg.Client({ ...pgConnection(`127.0.0.1:${pgPort}`, 'test'), connectionTimeoutMillis: 3000 });
  await c.connect();
  try {
    return (await c.query<T>(sql, params)).rows;
  } finally {
    await c.end();
  }
}

function postgresPids(): number[] {
  try {
    return execFileSync('pgrep', ['-f', `postgres -D ${join(dir, 'pgdata')}`], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean)
      .map(Number);
  } catch {
    return [];
  }
}

beforeAll(async () => {
  if (!existsSync(NODE_MAIN)) throw new Error(`${NODE_MAIN} is missing: run npm run build first`);
  httpPort = await freePort();
  pgPort = await freePort();
  const nowhere = await freePort(); // managers that do not answer: the node must still serve PostgreSQL
  config = {
    cluster: 'pgtest',
    id: 'shard-1-pg-1',
    role: 'postgres',
    dataDir: dir,
    listen: { host: '127.0.0.1', httpPort },
    advertise: { http: `127.0.0.1:${httpPort}` },
    managers: [{ id: 'manager-1', http: `127.0.0.1:${nowhere}`, raft: `127.0.0.1:${nowhere}` }],
    heartbeatMs: 1000,
    logLevel: 'info',
    settings: { shard: 1, instance: 1, pgListen: { host: '127.0.0.1', port: pgPort }, pgAdvertise: `127.0.0.1:${pgPort}` },
  };
});

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  for (const pid of postgresPids()) process.kill(pid, 'SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('the postgres node program', () => {
  it('makes a cluster with initdb as a non-root user, starts it with durable settings and the schema, and reports /health', async () => {
    const n = startNode();
    const h = await until('health 200', async () => {
      const x = await health();
      return x?.status === 200 ? x : null;
    });
    expect(h.body).toMatchObject({ healthy: true, role: 'postgres', state: 'unassigned', shard: 1, instance: 1, epoch: 0, votes: 0, appliedOffset: null });
    const pgdata = join(dir, 'pgdata');
    const owner = statSync(pgdata).uid;
    if (userInfo().uid === 0) {
      const user = await pgOsUser(createLogger('t', 'silent'));
      expect(owner).toBe(user.uid);
      expect(owner).not.toBe(0);
      expect(statSync(pgdata).mode & 0o777).toBe(0o700);
    }
    const settings = await query<{ name: string; setting: string }>(
      `SELECT name, setting FROM pg_settings WHERE name IN ('fsync','synchronous_commit','full_page_writes','max_connections','listen_addresses','unix_socket_directories','port')`,
    );
    expect(Object.fromEntries(settings.map((s) => [s.name, s.setting]))).toEqual({
      fsync: 'on',
      synchronous_commit: 'on',
      full_page_writes: 'on',
      max_connections: '200',
      listen_addresses: '127.0.0.1',
      unix_socket_directories: '',
      port: String(pgPort),
    });
    const tables = await query<{ table_name: string }>(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1`);
    expect(tables.map((t) => t.table_name)).toEqual(['applied', 'meta', 'outbox', 'votes']);
    const meta = Object.fromEntries((await query<{ key: string; value: string }>('SELECT key, value FROM meta')).map((r) => [r.key, r.value]));
    expect(meta).toMatchObject({ node: 'shard-1-pg-1', shard: '1', schema_version: String(SCHEMA_VERSION) });
    const metrics = await request(`http://127.0.0.1:${httpPort}/metrics`);
    expect(await metrics.body.text()).toMatch(/dvote_pg_up\{[^}]*\} 1/);
    // /health's vote count is a periodic sample; /votes/count (what `dvote
    // report` shows) counts now: rows written a moment ago are in it.
    const before = Date.now();
    await query('INSERT INTO votes (voter_id, choice) VALUES (901, 1), (902, 2), (903, 3)');
    const counted = await request(`http://127.0.0.1:${httpPort}/votes/count`);
    const body = (await counted.body.json()) as { votes: number; countedAt: string };
    expect(body.votes).toBe(3);
    expect(Date.parse(body.countedAt)).toBeGreaterThanOrEqual(before);
    expect(await countNow(`http://127.0.0.1:${httpPort}`)).toBe(3);
    await query('DELETE FROM votes');
    expect(await countNow(`http://127.0.0.1:${httpPort}`)).toBe(0);
    expect(await countNow(`http://127.0.0.1:${await freePort()}`)).toBeNull();
    // SIGTERM: PostgreSQL shuts down cleanly and the node exits 0
    n.child.kill('SIGTERM');
    expect(await n.exited).toBe(0);
    expect(n.output()).toMatch(/PostgreSQL stopped/);
    expect(postgresPids()).toEqual([]);
  }, 120_000);

  it('a SIGKILLed node takes its PostgreSQL down with it; the next start recovers the data', async () => {
    const n = startNode();
    await until('health 200', async () => (await health())?.status === 200);
    await query('INSERT INTO votes (voter_id, choice) VALUES (1, 1), (2, 2)');
    expect(postgresPids().length).toBeGreaterThan(0);
    n.child.kill('SIGKILL');
    await n.exited;
    await until('PostgreSQL to die with its node', async () => postgresPids().length === 0, 10_000);
    const again = startNode();
    const h = await until('health 200 after restart', async () => {
      const x = await health();
      return x?.status === 200 && x.body.votes === 2 ? x : null;
    }).catch((e: Error) => {
      throw new Error(`${e.message}\n${again.output().slice(-3000)}`);
    });
    expect(h.body.votes).toBe(2);
    expect((await query<{ n: number }>('SELECT count(*)::int AS n FROM votes'))[0]!.n).toBe(2);
    // PostgreSQL itself crashes: the node exits non-zero so that its runtime restarts it
    const pid = Number((h.body.pg as { pid: number }).pid);
    process.kill(pid, 'SIGKILL');
    const code = await again.exited;
    expect(code).not.toBe(0);
    expect(again.output()).toMatch(/PostgreSQL exited unexpectedly/);
  }, 120_000);

  it('a PostgreSQL left running on the data directory is stopped before a new one starts', async () => {
    const log = createLogger('test', 'silent');
    const user = await pgOsUser(log);
    const opts = { binDir: testPgBinDir(), dataDir: join(dir, 'pgdata'), listen: { host: '127.0.0.1', port: pgPort }, user, log };
    const leftover = new PgServer(opts);
    let leftoverDied = false;
    leftover.onUnexpectedExit(() => (leftoverDied = true));
    await leftover.start();
    const fresh = new PgServer(opts);
    await fresh.start();
    expect(leftoverDied).toBe(true);
    expect((await query<{ n: number }>('SELECT count(*)::int AS n FROM votes'))[0]!.n).toBe(2);
    await fresh.stop();
  }, 120_000);
});
