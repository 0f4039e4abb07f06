// One HTTP request through undici's dispatcher, the lightest way undici
// offers: `request()` adds URL parsing, a body stream and a promise chain,
// about 40 % more client CPU per request (bench/client-cost.ts). The vote,
// broker and manager clients and the HTTP floor use it: every node shares two
// cores with the rest of the cluster and the load generator, so the cost per
// request of each internal hop is part of every figure the bench prints.
import type { Dispatcher } from 'undici';

export interface HttpCall {
  origin: string;
  path: string;
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  headers?: Record<string, string>;
  body?: string | Uint8Array | null;
  /** Per-request timeout for the answer's headers and between body chunks, ms. */
  timeoutMs: number;
}

export interface HttpAnswer {
  status: number;
  /** Header names in lower case. */
  headers: Record<string, string | string[] | undefined>;
  bytes: Buffer;
}

const EMPTY = Buffer.alloc(0);

export function httpCall(dispatcher: Dispatcher, c: HttpCall): Promise<HttpAnswer> {
  return new Promise<HttpAnswer>((resolve, reject) => {
    let status = 0;
    let headers: Record<string, string | string[] | undefined> = {};
    const chunks: Buffer[] = [];
    dispatcher.dispatch(
      {
        origin: c.origin,
        path: c.path,
        method: c.method,
        headers: c.headers ?? null,
        body: c.body ?? null,
        headersTimeout: c.timeoutMs,
        bodyTimeout: c.timeoutMs,
      },
      {
        onRequestStart() {},
        onResponseStart(_c, statusCode, h) {
          status = statusCode;
          headers = h;
        },
        onResponseData(_c, chunk) {
          chunks.push(chunk);
        },
        onResponseEnd() {
          resolve({ status, headers, bytes: chunks.length === 1 ? chunks[0]! : chunks.length === 0 ? EMPTY : Buffer.concat(chunks) });
        },
        onResponseError(_c, err) {
          reject(err);
        },
      },
    );
  });
}

export interface JsonCall {
  origin: string;
  path: string;
  method: 'GET' | 'POST';
  body?: unknown;
  /** Per-request timeout for the answer's headers and between body chunks, ms. */
  timeoutMs: number;
}

export interface JsonAnswer {
  status: number;
  /** The parsed JSON answer; `{error}` with the text when it is not JSON. */
  body: Record<string, unknown>;
  /** The Retry-After header, when the answer had one. */
  retryAfter?: string;
}

const JSON_HEADERS = { 'content-type': 'application/json' };

/** A JSON body out (when given), a JSON object back. */
export async function jsonCall(dispatcher: Dispatcher, c: JsonCall): Promise<JsonAnswer> {
  const r = await httpCall(dispatcher, {
    origin: c.origin,
    path: c.path,
    method: c.method,
    ...(c.body !== undefined ? { headers: JSON_HEADERS, body: JSON.stringify(c.body) } : {}),
    timeoutMs: c.timeoutMs,
  });
  const text = r.bytes.toString();
  let body: Record<string, unknown> = {};
  try {
    body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
  } catch {
    body = { error: text.slice(0, 200) };
  }
  const a: JsonAnswer = { status: r.status, body };
  const ra = r.headers['retry-after'];
  if (ra !== undefined) a.retryAfter = Array.isArray(ra) ? ra[0]! : ra;
  return a;
}

const splits = new Map<string, { origin: string; prefix: string }>();

/** A base URL ("http://host:port[/prefix]") split into the dispatcher's origin and a path prefix; cached. */
export function splitBaseUrl(url: string): { origin: string; prefix: string } {
  let b = splits.get(url);
  if (!b) {
    const u = new URL(url);
    b = { origin: u.origin, prefix: u.pathname.replace(/\/$/, '') };
    if (splits.size > 1_000) splits.clear();
    splits.set(url, b);
  }
  return b;
}
