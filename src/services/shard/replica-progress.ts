// How far each replica of the shard has applied the vote log, pushed by the
// replicas themselves: every applier transaction ends with
// pg_notify('dvote_applied', next_offset) (postgres/replica-applier.ts), which
// PostgreSQL delivers at commit to every session that LISTENs. The shard
// service keeps one LISTEN session per replica (opened once, re-opened after
// a failure), so sync mode learns of progress the moment it is durable,
// without polling.
//
// A replica whose session is down, or whose copy is not ready yet (being
// seeded), is "unavailable": sync mode does not wait for it (waiting would
// stop every vote of the shard while one copy is out), and /health says so.
import pg from 'pg';
import type { Logger } from '../common/logger.js';
import { APPLIED_CHANNEL, pgConnection } from '../postgres/pg-schema.js';
import { sleep } from './vote-log.js';

interface ReplicaSession {
  node: string;
  address: string;
  client: pg.Client | null;
  /** The replica's applied.next_offset (null until known). */
  next: number | null;
  ready: boolean;
  connected: boolean;
  error: string | null;
  closed: boolean;
}

interface Waiter {
  offset: number;
  resolve: () => void;
}

export interface ReplicaProgressView {
  node: string;
  available: boolean;
  nextOffset: number | null;
  error?: string;
}

export class ReplicaProgress {
  private readonly sessions = new Map<string, ReplicaSession>();
  private waiters: Waiter[] = [];

  constructor(
    private readonly partition: number,
    private readonly applicationName: string,
    private readonly log: Logger,
  ) {}

  /** Follow exactly these replicas (opening and closing sessions as needed). */
  setReplicas(replicas: { node: string; address: string }[]): void {
    const want = new Map(replicas.map((r) => [r.node, r.address]));
    for (const [node, s] of this.sessions) {
      if (want.get(node) !== s.address) {
        s.closed = true;
        void s.client?.end().catch(() => undefined);
        this.sessions.delete(node);
      }
    }
    for (const [node, address] of want) {
      if (this.sessions.has(node)) continue;
      const s: ReplicaSession = { node, address, client: null, next: null, ready: false, connected: false, error: null, closed: false };
      this.sessions.set(node, s);
      void this.run(s);
    }
    this.check();
  }

  view(): ReplicaProgressView[] {
    return [...this.sessions.values()].map((s) => ({
      node: s.node,
      available: this.available(s),
      nextOffset: s.next,
      ...(s.error ? { error: s.error } : {}),
    }));
  }

  private available(s: ReplicaSession): boolean {
    return s.connected && s.ready && s.next !== null;
  }

  /**
   * Resolve once every available replica has applied the entry at `offset`
   * (its next offset is past it); false if the deadline or signal came first.
   */
  waitApplied(offset: number, signal: AbortSignal, timeoutMs: number): Promise<boolean> {
    if (this.allPast(offset)) return Promise.resolve(true);
    return new Promise<boolean>((resolve) => {
      let settled = false;
      const finish = (ok: boolean) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        signal.removeEventListener('abort', onAbort);
        this.waiters = this.waiters.filter((w) => w !== waiter);
        resolve(ok);
      };
      const waiter: Waiter = { offset, resolve: () => finish(true) };
      const onAbort = () => finish(false);
      const timer = setTimeout(() => finish(false), timeoutMs);
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private allPast(offset: number): boolean {
    for (const s of this.sessions.values()) if (this.available(s) && s.next! <= offset) return false;
    return true;
  }

  private check(): void {
    if (this.waiters.length === 0) return;
    for (const w of [...this.waiters]) if (this.allPast(w.offset)) w.resolve();
  }

  async close(): Promise<void> {
    for (const s of this.sessions.values()) {
      s.closed = true;
      await s.client?.end().catch(() => undefined);
    }
    this.sessions.clear();
    for (const w of this.waiters) w.resolve();
    this.waiters = [];
  }

  private async run(s: ReplicaSession): Promise<void> {
    while (!s.closed) {
      const client = new pg.Client({ ...pgConnection(s.address, `${this.applicationName}-sync`), connectionTimeoutMillis: 2_000 });
      s.client = client;
      const ended = new Promise<void>((resolve) => {
        client.on('error', (e) => {
          s.error = e.message;
          resolve();
        });
        client.on('end', () => resolve());
      });
      try {
        await client.connect();
        client.on('notification', (n) => {
          if (n.channel !== APPLIED_CHANNEL || n.payload === undefined) return;
          const v = Number(n.payload);
          if (Number.isFinite(v) && (s.next === null || v > s.next)) {
            s.next = v;
            s.ready = true;
            this.check();
          }
        });
        await client.query(`LISTEN ${APPLIED_CHANNEL}`);
        const r = await client.query<{ next_offset: number | null; copy: string | null }>(
          `SELECT (SELECT next_offset FROM applied WHERE partition = $1) AS next_offset, (SELECT value FROM meta WHERE key = 'copy') AS copy`,
          [this.partition],
        );
        const row = r.rows[0];
        s.ready = row?.copy === 'ready';
        if (row?.next_offset !== null && row?.next_offset !== undefined && (s.next === null || row.next_offset > s.next)) s.next = row.next_offset;
        if (s.next === null && s.ready) s.next = 0;
        s.connected = true;
        s.error = null;
        this.check();
        // Re-read readiness now and then: a copy being seeded says so in meta.
        while (!s.closed && s.connected) {
          const tick = sleep(1_000);
          const r2 = await Promise.race([ended.then(() => null), tick.then(() => 'tick' as const)]);
          if (r2 === null) break;
          if (!s.ready) {
            const m = await client.query<{ copy: string | null; next_offset: number | null }>(
              `SELECT (SELECT value FROM meta WHERE key = 'copy') AS copy, (SELECT next_offset FROM applied WHERE partition = $1) AS next_offset`,
              [this.partition],
            );
            s.ready = m.rows[0]?.copy === 'ready';
            if (s.ready) {
              s.next = Math.max(s.next ?? 0, m.rows[0]?.next_offset ?? 0);
              this.check();
            }
          }
        }
      } catch (e) {
        s.error = (e as Error).message;
      }
      s.connected = false;
      this.check();
      await client.end().catch(() => undefined);
      if (s.closed) return;
      this.log.debug({ replica: s.node, err: s.error }, 'replica progress session lost; reconnecting');
      await sleep(1_000);
    }
  }
}
