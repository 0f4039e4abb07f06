import { describe, expect, it } from 'vitest';
import { desiredNodes } from '../../src/core/layout.js';
import { buildSpec } from '../../src/core/specs.js';
import { defaultPortBase, validateTopology } from '../../src/core/topology.js';
import type { Addressing } from '../../src/runtime/runtime.js';
import { parseShardSettings } from '../../src/services/shard/shard-settings.js';

describe('topology validation', () => {
  it('fills defaults: 3 managers, 3 brokers, 2 shards of primary + 2 replicas, log mode, the original ballot', () => {
    const r = validateTopology({});
    expect(r.errors).toEqual([]);
    expect(r.topology).toMatchObject({
      cluster: 'dvote',
      managers: 3,
      brokers: 3,
      shards: 2,
      replicas: 2,
      replication: 'log',
      ballot: ['Democrats', 'Republicans', 'Protest vote'],
      ports: { base: 7100 },
    });
  });

  it('reports every problem at once as path: message', () => {
    const r = validateTopology({ managers: 0, brokers: -1, shards: 3, shardMap: 'parity', replicas: 'two', colour: 'red' });
    expect(r.topology).toBeNull();
    expect(r.errors).toEqual(
      expect.arrayContaining([
        'colour: unknown key (check the spelling; see templates/topology/default.yaml)',
      ]),
    );
    // zod stops at the first failing schema level per key, but every key is reported
    const keys = r.errors.map((e) => e.split(':')[0]);
    expect(keys).toEqual(expect.arrayContaining(['managers', 'brokers', 'replicas', 'colour']));
  });

  it('finds contradictions between valid values', () => {
    const r = validateTopology({ shards: 3, shardMap: 'parity', brokers: 0, replication: 'log', replicationFactor: 2 });
    expect(r.errors).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^shardMap: "parity" .* needs exactly 2 shards, not 3/),
        expect.stringMatching(/^brokers: replication "log" .* needs at least 1 broker/),
        expect.stringMatching(/^replicationFactor: 2 is more than the 0 brokers/),
      ]),
    );
  });

  it('allows an even number of managers with a warning', () => {
    const r = validateTopology({ managers: 4 });
    expect(r.errors).toEqual([]);
    expect(r.warnings).toEqual([expect.stringMatching(/^managers: 4 managers/)]);
  });

  it('rejects duplicate ballot choices and absurd sizes', () => {
    const r = validateTopology({ ballot: ['A', 'a'], managers: 99 });
    expect(r.errors).toEqual(
      expect.arrayContaining([expect.stringMatching(/^managers: managers must be at most 7/)]),
    );
    const r2 = validateTopology({ ballot: ['A', 'a'] });
    expect(r2.errors).toEqual(['ballot.1: "a" appears twice']);
  });

  it('gives other clusters their own port block', () => {
    expect(defaultPortBase('dvote')).toBe(7100);
    const b = defaultPortBase('ci-2');
    expect(b).toBeGreaterThanOrEqual(8100);
    expect(b).not.toBe(defaultPortBase('ci-3'));
    expect(b + 600).toBeLessThanOrEqual(32768); // below Linux's ephemeral port range
  });
});

describe('topology presets', () => {
  it('every preset in templates/topology validates without errors', async () => {
    const { readdirSync } = await import('node:fs');
    const { loadTopology } = await import('../../src/cli/topology-input.js');
    const dir = new URL('../../templates/topology/', import.meta.url).pathname;
    const files = readdirSync(dir).filter((f) => f.endsWith('.yaml'));
    expect(files).toEqual(expect.arrayContaining(['default.yaml', 'disvote-2shards.yaml', 'ten-shards.yaml']));
    for (const f of files) {
      const t = loadTopology(`${dir}${f}`, {});
      expect(t.topology.cluster).toMatch(/^[a-z]/);
    }
    expect(loadTopology(`${dir}disvote-2shards.yaml`, {}).topology).toMatchObject({ shards: 2, shardMap: 'parity', replication: 'async' });
    expect(loadTopology(`${dir}ten-shards.yaml`, {}).topology).toMatchObject({ shards: 10, shardMap: 'last-digit' });
  });

  it('a broken file is reported with every problem and names the fix', async () => {
    const { writeFileSync, mkdtempSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const { loadTopology } = await import('../../src/cli/topology-input.js');
    const dir = mkdtempSync(join(tmpdir(), 'topo-'));
    const f = join(dir, 't.yaml');
    writeFileSync(f, 'managers: 0\nshards: 2\nbrokerz: 3\n');
    try {
      loadTopology(f, {});
      expect.unreachable();
    } catch (e) {
      const err = e as { exitCode: number; message: string; details: string[] };
      expect(err.exitCode).toBe(2);
      expect(err.message).toMatch(/has 2 problems: fix them and run again; nothing was started/);
      expect(err.details).toEqual(expect.arrayContaining([expect.stringMatching(/^managers:/), expect.stringMatching(/^brokerz: unknown key/)]));
    }
    writeFileSync(f, 'managers: [1,\n');
    expect(() => loadTopology(f, {})).toThrow(/is not valid YAML/);
  });
});

describe('groupCommit tuning', () => {
  const addressing: Addressing = {
    internal: (node, _s, port) => `${node}:${port}`,
    listen: (_n, _s, port) => ({ host: '127.0.0.1', port }),
    dataDir: (node) => `/data/${node}`,
  };

  it('reaches every shard service as its batcher settings, and only shard services', () => {
    const t = validateTopology({ groupCommit: { maxBatch: 500, maxInFlight: 2 } }).topology!;
    const nodes = desiredNodes(t);
    const ctx = { topology: t, addressing, managers: nodes.filter((n) => n.role === 'manager'), bootstrap: true };
    const shards = nodes.filter((n) => n.role === 'shard');
    expect(shards).toHaveLength(2);
    for (const n of shards) {
      const s = parseShardSettings(buildSpec(n, ctx).config.settings);
      expect(s).toMatchObject({ shard: n.shard, replication: 'log', maxBatch: 500, maxInFlight: 2 });
    }
    for (const n of nodes.filter((x) => x.role !== 'shard')) expect(buildSpec(n, ctx).config.settings).not.toHaveProperty('maxInFlight');
  });

  it('is left to the service defaults when absent', () => {
    const t = validateTopology({}).topology!;
    const nodes = desiredNodes(t);
    const ctx = { topology: t, addressing, managers: nodes.filter((n) => n.role === 'manager'), bootstrap: true };
    const s = parseShardSettings(buildSpec(nodes.find((n) => n.role === 'shard')!, ctx).config.settings);
    expect(s.maxInFlight).toBeUndefined();
    expect(s.maxBatch).toBeUndefined();
  });

  it('rejects values out of range with the key named', () => {
    const r = validateTopology({ groupCommit: { maxInFlight: 0, maxBatch: 20_000, window: 3 } });
    expect(r.topology).toBeNull();
    const keys = r.errors.map((e) => e.split(':')[0]);
    expect(keys).toEqual(expect.arrayContaining(['groupCommit.maxInFlight', 'groupCommit.maxBatch']));
  });
});
