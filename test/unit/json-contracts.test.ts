import { describe, expect, it } from 'vitest';
import { BenchV1, StatusV1, contractProblems } from '../../src/core/json-contracts.js';

describe('JSON contracts', () => {
  it('reports a renamed or missing field as a problem (so the contract tests can fail)', () => {
    const good = {
      schema: 'dvote.status/v1',
      cluster: 'c',
      runtime: 'docker',
      healthy: true,
      nodes: [{ name: 'manager-1', role: 'manager', state: 'leader', healthy: true, leader: 'manager-1', term: 2, commitIndex: 9, endpoint: 'http://127.0.0.1:7100' }],
    };
    expect(contractProblems(StatusV1, good)).toEqual([]);
    const renamed = { ...good, nodes: [{ ...good.nodes[0], commit: 9, commitIndex: undefined }] };
    expect(contractProblems(StatusV1, renamed)).toEqual([expect.stringMatching(/^nodes\.0\.commitIndex:/)]);
    expect(contractProblems(BenchV1, { schema: 'dvote.bench/v1' }).length).toBeGreaterThan(3);
  });
});
