import { describe, expect, it } from 'vitest';
import { maxOf, parsePrometheus, sumOf } from '../../src/bench/prometheus.js';

describe('prometheus text parser', () => {
  it('parses names, labels (with escapes) and values; sums and filters', () => {
    const f = parsePrometheus(`# HELP x a counter
# TYPE x counter
dvote_http_requests_total{route="/v1/kv/*",method="PUT",status="200"} 41
dvote_http_requests_total{route="/v1/kv/*",method="PUT",status="503"} 2
dvote_http_requests_total{route="/health",method="GET",status="200"} 7
dvote_raft_term 3
weird{label="a \\"quoted\\" value"} NaN
`);
    expect(sumOf(f, 'dvote_http_requests_total')).toBe(50);
    expect(sumOf(f, 'dvote_http_requests_total', { status: /^5/ })).toBe(2);
    expect(sumOf(f, 'dvote_http_requests_total', { method: 'GET' })).toBe(7);
    expect(maxOf(f, 'dvote_raft_term')).toBe(3);
    expect(f.get('weird')![0]!.labels.label).toBe('a "quoted" value');
    expect(sumOf(f, 'missing')).toBeNull();
  });
});
