// The peer of the vote benchmark: one plain, un-replicated PostgreSQL 15
// (Debian's, from scripts/install-peers.sh) loaded by pgbench with the
// settings of ../shared/PEERS.md: initdb as the postgres user, listen on
// 127.0.0.1 at a private port, max_connections=200, synchronous_commit on;
// table votes(voter_id bigint primary key, choice smallint not null, cast_at
// timestamptz default now()); one-row INSERT ... ON CONFLICT DO NOTHING per
// transaction, `pgbench -n -f single.sql -c 16 -j 2 -T <s>`.
import { execa } from 'execa';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface PgbenchResult {
  tps: number;
  rowsPerSec: number;
  latencyAvgMs: number | null;
  command: string;
}

function pgBin(): string {
  const base = '/usr/lib/postgresql';
  if (!existsSync(base)) throw new Error('PostgreSQL server binaries missing: run `bash scripts/install-peers.sh`');
  const v = readdirSync(base).filter((d) => existsSync(join(base, d, 'bin', 'postgres'))).sort().pop();
  if (!v) throw new Error('no PostgreSQL server under /usr/lib/postgresql: run `bash scripts/install-peers.sh`');
  return join(base, v, 'bin');
}

export class PgPeer {
  private constructor(
    readonly dir: string,
    readonly port: number,
    readonly bin: string,
  ) {}

  static async start(port: number): Promise<PgPeer> {
    const bin = pgBin();
    const dir = mkdtempSync(join(tmpdir(), 'dvote-pgpeer-'));
    chmodSync(dir, 0o777);
    const data = join(dir, 'data');
    const asPg = (cmd: string, args: string[]) => execa('runuser', ['-u', 'postgres', '--', join(bin, cmd), ...args], { cwd: '/' });
    await asPg('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8']);
    await asPg('pg_ctl', [
      '-D',
      data,
      '-l',
      join(dir, 'log'),
      '-w',
      '-o',
      `-c listen_addresses=127.0.0.1 -c port=${port} -c max_connections=200 -c unix_socket_directories=${dir} -c synchronous_commit=on -c fsync=on`,
      'start',
    ]);
    const peer = new PgPeer(dir, port, bin);
    await peer.psql(
      'CREATE TABLE votes(voter_id bigint primary key, choice smallint not null, cast_at timestamptz default now());',
    );
    return peer;
  }

  async psql(sql: string): Promise<string> {
    const r = await execa(join(this.bin, 'psql'), ['-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-Atc', sql]);
    return r.stdout;
  }

  /** pgbench with a custom script; `rowsPerTx` rows are inserted per transaction. */
  async pgbench(script: string, rowsPerTx: number, seconds: number, clients = 16, threads = 2): Promise<PgbenchResult> {
    const f = join(this.dir, `script-${rowsPerTx}.sql`);
    writeFileSync(f, script);
    const args = ['-h', '127.0.0.1', '-p', String(this.port), '-U', 'postgres', '-n', '-f', f, '-c', String(clients), '-j', String(threads), '-T', String(seconds), 'postgres'];
    const r = await execa(join(this.bin, 'pgbench'), args);
    const tps = Number(/tps = ([\d.]+)/.exec(r.stdout)?.[1] ?? NaN);
    const lat = /latency average = ([\d.]+) ms/.exec(r.stdout);
    return { tps, rowsPerSec: tps * rowsPerTx, latencyAvgMs: lat ? Number(lat[1]) : null, command: `pgbench ${args.join(' ')}` };
  }

  async stop(): Promise<void> {
    await execa('runuser', ['-u', 'postgres', '--', join(this.bin, 'pg_ctl'), '-D', join(this.dir, 'data'), '-m', 'immediate', 'stop'], { reject: false });
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export const SINGLE_ROW = `\\set vid random(1, 9000000000000000)
\\set ch random(1, 8)
INSERT INTO votes(voter_id, choice) VALUES (:vid, :ch) ON CONFLICT DO NOTHING;
`;

export function multiRow(n: number): string {
  const lines: string[] = [];
  const values: string[] = [];
  for (let i = 0; i < n; i++) {
    lines.push(`\\set v${i} random(1, 9000000000000000)`);
    values.push(`(:v${i}, ${1 + (i % 3)})`);
  }
  return `${lines.join('\n')}\nINSERT INTO votes(voter_id, choice) VALUES ${values.join(', ')} ON CONFLICT DO NOTHING;\n`;
}
