// Client SDK for the managers' key-value API. It knows every manager and moves
// to a live one by itself (the client-side failover of the original chat
// design): on a connection error, a timeout or a 503 it tries the next
// endpoint, preferring the leader once it has learned who that is. Writes
// carry an idempotency key, so a write retried after an unknown outcome is
// applied once.
import { randomUUID } from 'node:crypto';
import { Agent } from 'undici';
import { httpCall, splitBaseUrl } from './http-call.js';

export interface ManagerClientOptions {
  /** HTTP base addresses of the managers, "host:port" or "http://host:port". */
  endpoints: string[];
  /** Give up on one logical operation after this long (default 10 s). */
  timeoutMs?: number;
  /** Per-attempt timeout (default 2 s). */
  attemptTimeoutMs?: number;
  /** Connections per manager (default 16). */
  connections?: number;
}

export interface KvItem {
  key: string;
  value: string;
  revision: number;
}

export class ManagerUnavailableError extends Error {
  constructor(
    message: string,
    readonly lastStatus?: number,
  ) {
    super(message);
    this.name = 'ManagerUnavailableError';
  }
}

export class ManagerRequestError extends Error {
  constructor(
    readonly status: number,
    readonly body: Record<string, unknown>,
  ) {
    super(String(body.error ?? `HTTP ${status}`));
    this.name = 'ManagerRequestError';
  }
}

interface RawReply {
  status: number;
  body: Record<string, unknown>;
}

/**
 * Connect timeout of the cluster's internal clients. The nodes are on this
 * host or its container network, where a connection is made in well under
 * a millisecond; a node that was killed leaves an address that answers
 * nothing (a stopped container's address is gone from the bridge, so a
 * connect waits for ARP to give up, about 3 s), and the default (10 s) made
 * a client retry late: a killed partition leader once cost 2.2 s of votes.
 */
export const CONNECT_TIMEOUT_MS = 500;

export class ManagerClient {
  private readonly endpoints: string[];
  private preferred = 0;
  private readonly agent: Agent;
  private readonly timeoutMs: number;
  private readonly attemptTimeoutMs: number;

  constructor(opts: ManagerClientOptions) {
    if (opts.endpoints.length === 0) throw new Error('manager client: no endpoints given');
    this.endpoints = opts.endpoints.map((e) => (e.startsWith('http') ? e.replace(/\/$/, '') : `http://${e}`));
    this.timeoutMs = opts.timeoutMs ?? 10_000;
    this.attemptTimeoutMs = opts.attemptTimeoutMs ?? 2_000;
    this.agent = new Agent({ connections: opts.connections ?? 16, keepAliveTimeout: 30_000, pipelining: 1, connect: { timeout: CONNECT_TIMEOUT_MS } });
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  /** Linearizable by default; `stale` reads any member's applied state. */
  async get(key: string, opts: { stale?: boolean } = {}): Promise<KvItem | null> {
    const r = await this.call('GET', `/v1/kv/${encodeKey(key)}${opts.stale ? '?stale=true' : ''}`, undefined, [404]);
    if (r.status === 404) return null;
    return { key, value: String(r.body.value), revision: Number(r.body.revision) };
  }

  async put(key: string, value: string): Promise<{ revision: number }> {
    const r = await this.call('PUT', `/v1/kv/${encodeKey(key)}`, { value }, [], randomUUID());
    return { revision: Number(r.body.revision) };
  }

  async delete(key: string): Promise<{ revision: number; deleted: boolean }> {
    const r = await this.call('DELETE', `/v1/kv/${encodeKey(key)}`, undefined, [], randomUUID());
    return { revision: Number(r.body.revision), deleted: Boolean(r.body.deleted) };
  }

  /** Compare-and-set; expected null means "the key must be absent". */
  async cas(key: string, expected: string | null, value: string): Promise<{ ok: true; revision: number } | { ok: false; current: string | null }> {
    const r = await this.call('POST', `/v1/cas/${encodeKey(key)}`, { expected, value }, [409], randomUUID());
    if (r.status === 409) return { ok: false, current: (r.body.current as string | null) ?? null };
    return { ok: true, revision: Number(r.body.revision) };
  }

  async txn(t: {
    compare: { key: string; value: string | null }[];
    success: ({ op: 'put'; key: string; value: string } | { op: 'delete'; key: string })[];
    failure?: ({ op: 'put'; key: string; value: string } | { op: 'delete'; key: string })[];
    read?: string[];
  }): Promise<{ succeeded: boolean; revision: number; values?: Record<string, string | null> }> {
    const r = await this.call('POST', '/v1/txn', t, [], randomUUID());
    return r.body as { succeeded: boolean; revision: number; values?: Record<string, string | null> };
  }

  async list(prefix: string, opts: { stale?: boolean } = {}): Promise<KvItem[]> {
    const q = `prefix=${encodeURIComponent(prefix)}${opts.stale ? '&stale=true' : ''}`;
    const r = await this.call('GET', `/v1/kv?${q}`);
    return r.body.items as KvItem[];
  }

  /** Any JSON endpoint, with the same failover (used by the CLI and services). */
  async request(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, body?: unknown, okStatuses: number[] = []): Promise<RawReply> {
    return this.call(method, path, body, okStatuses, method === 'GET' ? undefined : randomUUID());
  }

  /** Health of every endpoint, in order, without failover (for status displays). */
  async healthAll(): Promise<({ endpoint: string; ok: true; body: Record<string, unknown> } | { endpoint: string; ok: false; error: string })[]> {
    return Promise.all(
      this.endpoints.map(async (endpoint) => {
        try {
          const b = splitBaseUrl(endpoint);
          const res = await httpCall(this.agent, { origin: b.origin, path: `${b.prefix}/health`, method: 'GET', timeoutMs: this.attemptTimeoutMs });
          const body = JSON.parse(res.bytes.toString()) as Record<string, unknown>;
          return { endpoint, ok: true as const, body };
        } catch (e) {
          return { endpoint, ok: false as const, error: (e as Error).message };
        }
      }),
    );
  }

  private async call(
    method: 'GET' | 'POST' | 'PUT' | 'DELETE',
    path: string,
    body?: unknown,
    okStatuses: number[] = [],
    idempotencyKey?: string,
  ): Promise<RawReply> {
    const deadline = Date.now() + this.timeoutMs;
    let attempt = 0;
    let lastProblem = 'no attempt made';
    let lastStatus: number | undefined;
    while (Date.now() < deadline) {
      const i = (this.preferred + attempt) % this.endpoints.length;
      const endpoint = this.endpoints[i]!;
      attempt++;
      try {
        const b = splitBaseUrl(endpoint);
        const r = await httpCall(this.agent, {
          origin: b.origin,
          path: b.prefix + path,
          method,
          headers: {
            ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
            ...(idempotencyKey ? { 'idempotency-key': idempotencyKey } : {}),
          },
          body: body === undefined ? null : JSON.stringify(body),
          timeoutMs: this.attemptTimeoutMs,
        });
        const text = r.bytes.toString();
        const parsed = text ? (JSON.parse(text) as Record<string, unknown>) : {};
        if (r.status < 300 || okStatuses.includes(r.status)) {
          this.preferred = i;
          return { status: r.status, body: parsed };
        }
        lastStatus = r.status;
        lastProblem = `${endpoint}: ${r.status} ${String(parsed.error ?? '')}`;
        if (r.status === 503 || r.status === 504) {
          // 504 on a write: outcome unknown; the idempotency key makes the retry safe.
          // The leader's advertised address matches one of ours when the
          // client runs where the cluster addresses are reachable (process
          // runtime, or inside the cluster network); otherwise keep rotating.
          const leaderHttp = typeof parsed.leaderHttp === 'string' ? parsed.leaderHttp : null;
          const hinted = leaderHttp ? this.endpoints.findIndex((e) => e.replace(/^https?:\/\//, '') === leaderHttp) : -1;
          if (hinted >= 0) {
            this.preferred = hinted;
            attempt = 0;
          }
          await sleep(Math.min(50 * Math.max(1, attempt), 300));
          continue;
        }
        throw new ManagerRequestError(r.status, parsed);
      } catch (e) {
        if (e instanceof ManagerRequestError) throw e;
        lastProblem = `${endpoint}: ${(e as Error).message}`;
        // connection refused / reset / timeout: try the next manager
        if (attempt % this.endpoints.length === 0) await sleep(Math.min(20 * attempt, 200));
      }
    }
    throw new ManagerUnavailableError(
      `no manager answered ${method} ${path} within ${this.timeoutMs} ms (last: ${lastProblem}); is the cluster up? try: dvote status`,
      lastStatus,
    );
  }
}

function encodeKey(key: string): string {
  return key.split('/').map(encodeURIComponent).join('/');
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
