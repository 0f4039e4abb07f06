// Seeding a copy from another copy of the shard: a replica whose data was
// lost, a fenced old primary, a replica added by `dvote scale`.
//
// In ONE transaction on the target: TRUNCATE votes, outbox and applied (its
// lock also holds off direct writes from a sync service without brokers),
// then, from ONE REPEATABLE READ snapshot of the source taken after that
// lock: every vote (in chunks of 20,000, voter order) and the source's
// applied row (next offset and latest barrier), then meta copy = 'ready'.
// Afterwards the target's applier catches up from that offset. A crash
// half-way commits nothing, and the next start seeds again.
//
// Which source: the ready replica that has applied the most, else the
// primary. A replica holds exactly a prefix of the vote log. The primary may
// also hold votes the log does not have yet (its outbox: async mode's
// not-yet-shipped votes), which must not spread to a copy before they reach
// the log - a failover would otherwise leave copies that disagree - so from
// the primary only votes without an outbox row are copied; the others come
// through the log like any later vote.
import pg from 'pg';
import { pgConnection, readMeta } from './pg-schema.js';

export interface SeedSource {
  node: string;
  /** "host:port" of its PostgreSQL. */
  address: string;
  role: 'primary' | 'replica';
}

export interface SeedResult {
  source: string;
  votes: number;
  nextOffset: number;
  ms: number;
}

const CHUNK = 20_000;

interface Candidate {
  src: SeedSource;
  client: pg.Client;
  next: number;
}

async function openCandidate(src: SeedSource, appName: string, partition: number): Promise<Candidate | null> {
  const client = new pg.Client({ ...pgConnection(src.address, `${appName}-seed`), connectionTimeoutMillis: 3_000 });
  client.on('error', () => undefined);
  try {
    await client.connect();
    const meta = await readMeta(client);
    if (meta.copy !== 'ready' || meta.role !== src.role) {
      await client.end();
      return null;
    }
    const r = await client.query<{ next_offset: number }>('SELECT next_offset FROM applied WHERE partition = $1', [partition]);
    return { src, client, next: r.rows[0]?.next_offset ?? 0 };
  } catch {
    await client.end().catch(() => undefined);
    return null;
  }
}

/** Pick the best reachable, ready source (a replica with the highest applied offset, else the primary); null if none. */
async function pickSource(sources: SeedSource[], appName: string, partition: number): Promise<Candidate | null> {
  const opened = (await Promise.all(sources.map((s) => openCandidate(s, appName, partition)))).filter((c): c is Candidate => c !== null);
  const replicas = opened.filter((c) => c.src.role === 'replica').sort((a, b) => b.next - a.next);
  const best = replicas[0] ?? opened.find((c) => c.src.role === 'primary') ?? null;
  for (const c of opened) if (c !== best) await c.client.end().catch(() => undefined);
  return best;
}

/**
 * Replace the target's votes with a consistent copy of a source's. Returns
 * null when no source is ready and reachable (nothing changed then).
 */
export async function seedCopy(target: pg.Pool, sources: SeedSource[], o: { partition: number; applicationName: string; meta?: Record<string, string> }): Promise<SeedResult | null> {
  const t0 = performance.now();
  const cand = await pickSource(sources, o.applicationName, o.partition);
  if (!cand) return null;
  const src = cand.client;
  const dst = await target.connect();
  let votes = 0;
  try {
    await dst.query('BEGIN');
    await dst.query('TRUNCATE votes, outbox, applied');
    await dst.query(`DELETE FROM meta WHERE key IN ('copy', 'seeded_from', 'seeded_at')`);
    await src.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const meta = await readMeta(src);
    if (meta.copy !== 'ready') throw new Error(`${cand.src.node} is no longer a ready copy`);
    const applied = await src.query<{ next_offset: number; barrier_epoch: number; barrier_writer: number }>(
      'SELECT next_offset, barrier_epoch, barrier_writer FROM applied WHERE partition = $1',
      [o.partition],
    );
    // From a primary, votes still in its outbox (not yet in the log) are left
    // out: the copy gets them from the log, in the log's order.
    const inOutbox = new Set<number>();
    if (cand.src.role === 'primary') {
      const ob = await src.query<{ id: number }>('SELECT unnest(voter_ids) AS id FROM outbox');
      for (const row of ob.rows) inOutbox.add(row.id);
    }
    let after = -1;
    for (;;) {
      const r = await src.query<{ ids: number[] | null; choices: number[] | null; casts: string[] | null }>(
        `SELECT array_agg(voter_id ORDER BY voter_id) AS ids, array_agg(choice ORDER BY voter_id) AS choices,
                array_agg(cast_at::text ORDER BY voter_id) AS casts
         FROM (SELECT v.voter_id, v.choice, v.cast_at FROM votes v WHERE v.voter_id > $1 ORDER BY v.voter_id LIMIT $2) s`,
        [after, CHUNK],
      );
      const row = r.rows[0];
      const all = row?.ids ?? [];
      if (all.length === 0) break;
      const keep = inOutbox.size === 0 ? null : all.map((id) => !inOutbox.has(id));
      const pick = <T>(xs: T[]): T[] => (keep ? xs.filter((_, i) => keep[i]) : xs);
      const ids = pick(all);
      if (ids.length > 0) {
        await dst.query('INSERT INTO votes (voter_id, choice, cast_at) SELECT * FROM unnest($1::bigint[], $2::smallint[], $3::timestamptz[])', [
          ids,
          pick(row!.choices!).map(Number),
          pick(row!.casts!),
        ]);
      }
      votes += ids.length;
      after = all[all.length - 1]!;
      if (all.length < CHUNK) break;
    }
    const a = applied.rows[0];
    await dst.query('INSERT INTO applied (partition, next_offset, barrier_epoch, barrier_writer) VALUES ($1, $2, $3, $4)', [
      o.partition,
      a?.next_offset ?? 0,
      a?.barrier_epoch ?? 0,
      a?.barrier_writer ?? 0,
    ]);
    const extra = { copy: 'ready', seeded_from: cand.src.node, seeded_at: new Date().toISOString(), ...(o.meta ?? {}) };
    for (const [k, v] of Object.entries(extra)) {
      await dst.query('INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value', [k, v]);
    }
    await dst.query('COMMIT');
    return { source: cand.src.node, votes, nextOffset: a?.next_offset ?? 0, ms: Math.round(performance.now() - t0) };
  } catch (e) {
    await dst.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    dst.release();
    await src.query('ROLLBACK').catch(() => undefined);
    await src.end().catch(() => undefined);
  }
}

/**
 * Make the target an empty, ready copy at offset 0 (it then replays the whole
 * vote log): a brand-new shard's copies, a copy with no source to seed from,
 * a primary the managers reinstated after it lost its data.
 */
export async function resetCopy(target: pg.Pool, partition: number): Promise<void> {
  const c = await target.connect();
  try {
    await c.query('BEGIN');
    await c.query('TRUNCATE votes, outbox, applied');
    await c.query('INSERT INTO applied (partition, next_offset, barrier_epoch, barrier_writer) VALUES ($1, 0, 0, 0)', [partition]);
    await c.query(`INSERT INTO meta (key, value) VALUES ('copy', 'ready'), ('seeded_from', 'the vote log'), ('seeded_at', now()::text)
                   ON CONFLICT (key) DO UPDATE SET value = excluded.value`);
    await c.query('COMMIT');
  } catch (e) {
    await c.query('ROLLBACK').catch(() => undefined);
    throw e;
  } finally {
    c.release();
  }
}

/**
 * How many votes `self` holds that the copy at `otherAddress` does not (a
 * deposed primary against the new one: the votes lost to the failover).
 */
export async function countMissingOn(self: pg.Pool, otherAddress: string, applicationName: string): Promise<{ held: number; missing: number }> {
  const other = new pg.Client({ ...pgConnection(otherAddress, `${applicationName}-compare`), connectionTimeoutMillis: 3_000 });
  other.on('error', () => undefined);
  await other.connect();
  try {
    let after = -1;
    let held = 0;
    let missing = 0;
    for (;;) {
      const r = await self.query<{ ids: number[] | null }>(
        'SELECT array_agg(voter_id ORDER BY voter_id) AS ids FROM (SELECT voter_id FROM votes WHERE voter_id > $1 ORDER BY voter_id LIMIT $2) s',
        [after, CHUNK],
      );
      const ids = r.rows[0]?.ids ?? [];
      if (ids.length === 0) break;
      held += ids.length;
      const m = await other.query<{ n: number }>(
        'SELECT count(*)::bigint AS n FROM unnest($1::bigint[]) AS x(id) WHERE NOT EXISTS (SELECT 1 FROM votes v WHERE v.voter_id = x.id)',
        [ids],
      );
      missing += m.rows[0]?.n ?? 0;
      after = ids[ids.length - 1]!;
      if (ids.length < CHUNK) break;
    }
    return { held, missing };
  } finally {
    await other.end().catch(() => undefined);
  }
}
