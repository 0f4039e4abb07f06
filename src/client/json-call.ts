// One JSON request through undici's dispatcher, the lightest way undici
// offers: `request()` adds URL parsing, a body stream and a promise chain,
// about 40 % more client CPU per request (bench/client-cost.ts). The vote
// client and the HTTP floor use it: a load generator shares the cores with
// the cluster it measures, so its own cost per request is part of every
// figure it prints.
import type { Dispatcher } from 'undici';

export interface JsonCall {
  origin: string;
  path: string;
  method: 'GET' | 'POST';
  body?: unknown;
  /** Per-request timeout for the answer's headers and body, ms. */
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

export function jsonCall(dispatcher: Dispatcher, c: JsonCall): Promise<JsonAnswer> {
  return new Promise<JsonAnswer>((resolve, reject) => {
    let status = 0;
    let retryAfter: string | string[] | undefined;
    const chunks: Buffer[] = [];
    dispatcher.dispatch(
      {
        origin: c.origin,
        path: c.path,
        method: c.method,
        headers: c.body !== undefined ? JSON_HEADERS : {},
        body: c.body === undefined ? null : JSON.stringify(c.body),
        headersTimeout: c.timeoutMs,
        bodyTimeout: c.timeoutMs,
      },
      {
        onRequestStart() {},
        onResponseStart(_c, statusCode, headers) {
          status = statusCode;
          retryAfter = headers['retry-after'];
        },
        onResponseData(_c, chunk) {
          chunks.push(chunk);
        },
        onResponseEnd() {
          const text = chunks.length === 1 ? chunks[0]!.toString() : Buffer.concat(chunks).toString();
          let body: Record<string, unknown> = {};
          try {
            body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
          } catch {
            body = { error: text.slice(0, 200) };
          }
          const a: JsonAnswer = { status, body };
          if (retryAfter !== undefined) a.retryAfter = Array.isArray(retryAfter) ? retryAfter[0]! : retryAfter;
          resolve(a);
        },
        onResponseError(_c, err) {
          reject(err);
        },
      },
    );
  });
}
