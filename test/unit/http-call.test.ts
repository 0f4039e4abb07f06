// jsonCall against a real HTTP server on 127.0.0.1: what the vote client
// reads from an answer (status, JSON body, Retry-After), answers split over
// many chunks, bodies that are not JSON, and the errors it must pass on with
// their codes (the vote client tells "refused: not sent" from "unknown").
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Agent, errors } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { jsonCall } from '../../src/client/http-call.js';

let server: Server;
let origin: string;
const agent = new Agent({ connections: 4, pipelining: 1 });

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      if (req.url === '/echo') {
        res.writeHead(201, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ method: req.method, type: req.headers['content-type'] ?? null, got: body ? JSON.parse(body) : null }));
      } else if (req.url === '/busy') {
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end('{"error":"full"}');
      } else if (req.url === '/chunks') {
        res.writeHead(200, { 'content-type': 'application/json' });
        const text = JSON.stringify({ results: Array.from({ length: 2_000 }, (_, i) => ({ voterId: i, status: 201 })) });
        let at = 0;
        const next = () => {
          if (at >= text.length) return res.end();
          res.write(text.slice(at, (at += 997)));
          setImmediate(next);
        };
        next();
      } else if (req.url === '/text') {
        res.writeHead(502);
        res.end('<html>bad gateway</html>');
      } else if (req.url === '/slow') {
        setTimeout(() => res.end("{}"), 5_000).unref();
      } else {
        res.writeHead(204);
        res.end();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await agent.close();
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
});

describe('jsonCall', () => {
  it('sends the body as JSON and parses the answer', async () => {
    const a = await jsonCall(agent, { origin, path: '/echo', method: 'POST', body: { voterId: 7, choice: 'bob' }, timeoutMs: 5_000 });
    expect(a).toEqual({ status: 201, body: { method: 'POST', type: 'application/json', got: { voterId: 7, choice: 'bob' } } });
  });

  it('sends no body and no content type on a GET', async () => {
    const a = await jsonCall(agent, { origin, path: '/echo', method: 'GET', timeoutMs: 5_000 });
    expect(a.body).toEqual({ method: 'GET', type: null, got: null });
  });

  it('passes Retry-After on', async () => {
    const a = await jsonCall(agent, { origin, path: '/busy', method: 'POST', body: {}, timeoutMs: 5_000 });
    expect(a).toEqual({ status: 503, body: { error: 'full' }, retryAfter: '1' });
  });

  it('joins an answer that arrives in many chunks', async () => {
    const a = await jsonCall(agent, { origin, path: '/chunks', method: 'GET', timeoutMs: 5_000 });
    const results = a.body.results as { voterId: number }[];
    expect(results).toHaveLength(2_000);
    expect(results[1_999]!.voterId).toBe(1_999);
  });

  it('keeps the start of a body that is not JSON as the error', async () => {
    expect(await jsonCall(agent, { origin, path: '/text', method: 'GET', timeoutMs: 5_000 })).toEqual({ status: 502, body: { error: '<html>bad gateway</html>' } });
    expect(await jsonCall(agent, { origin, path: '/empty', method: 'GET', timeoutMs: 5_000 })).toEqual({ status: 204, body: {} });
  });

  it('rejects with the connection error and its code when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await expect(jsonCall(agent, { origin: `http://127.0.0.1:${port}`, path: '/', method: 'GET', timeoutMs: 5_000 })).rejects.toMatchObject({ code: 'ECONNREFUSED' });
  });

  it('gives up after the timeout when no answer comes', async () => {
    const t0 = Date.now();
    await expect(jsonCall(agent, { origin, path: '/slow', method: 'GET', timeoutMs: 300 })).rejects.toBeInstanceOf(errors.HeadersTimeoutError);
    expect(Date.now() - t0).toBeLessThan(4_000);
  });
});
