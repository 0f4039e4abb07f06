// Issue 3 acceptance on the docker runtime, through the real CLI (the flow is
// shared with the process file), plus bad input.
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { dvote } from '../utils/cli.js';
import { managerAcceptanceFlow } from './cli-managers.shared.js';

const env: Record<string, string> = {};
const cluster = `td${process.pid % 10000}`;

async function labelled(kind: 'ps' | 'network' | 'volume', c: string): Promise<string[]> {
  const args = kind === 'ps' ? ['ps', '-a'] : [kind, 'ls'];
  const r = await execa('docker', [...args, '-q', '--filter', `label=io.dvote.cluster=${c}`]);
  return r.stdout.split('\n').filter(Boolean);
}

beforeAll(async () => {
  const r = await execa('docker', ['info'], { reject: false });
  if (r.exitCode !== 0) throw new Error('Docker is not reachable: these tests need it (run scripts/setup.sh)');
});

managerAcceptanceFlow('docker', cluster, env, async (c) => [
  ...(await labelled('ps', c)).map((x) => `container ${x}`),
  ...(await labelled('network', c)).map((x) => `network ${x}`),
  ...(await labelled('volume', c)).map((x) => `volume ${x}`),
]);

describe('bad input on docker changes nothing', () => {
  it('a topology with contradictions -> exit 2; no container, network or volume created', async () => {
    const c = `${cluster}-bad`;
    const r = await dvote(['--cluster', c, 'up', '--runtime', 'docker', '--shards', '3', '--brokers', '0'], env);
    expect(r.code).toBe(2);
    const r2 = await dvote(['--cluster', c, 'up', '--runtime', 'docker', '--managers', '0'], env);
    expect(r2.code).toBe(2);
    expect(await labelled('ps', c)).toEqual([]);
    expect(await labelled('network', c)).toEqual([]);
  });
});
