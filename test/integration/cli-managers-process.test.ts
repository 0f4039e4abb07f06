// Issue 3 acceptance on the process runtime, through the real CLI (the flow
// is shared with the docker file), plus bad input.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { dvote } from '../utils/cli.js';
import { managerAcceptanceFlow } from './cli-managers.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-cli-proc-'));
const env = { DVOTE_STATE_DIR: stateDir };
const cluster = `tp${process.pid % 10000}`;

afterAll(() => rmSync(stateDir, { recursive: true, force: true }));

managerAcceptanceFlow('process', cluster, env, async (c) => {
  const dir = join(stateDir, 'clusters', c);
  return existsSync(dir) ? readdirSync(dir) : [];
});

describe('bad input changes nothing', () => {
  const bad = ['--cluster', `${cluster}-bad`];
  it('unknown flag -> exit 2', async () => {
    const r = await dvote([...bad, 'up', '--manager', '3'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/unknown option '--manager'/);
  });
  it('--managers 0 -> exit 2 naming the limit', async () => {
    const r = await dvote([...bad, 'up', '--runtime', 'process', '--managers', '0'], env);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/managers: managers must be at least 1/);
  });
  it('a topology with contradictions -> exit 2 with every problem; nothing created', async () => {
    const r = await dvote([...bad, 'up', '--runtime', 'process', '--shards', '3', '--brokers', '0', '--replicas', 'x'], env);
    expect(r.code).toBe(2);
    const r2 = await dvote([...bad, 'up', '--runtime', 'process', '--shards', '3', '--brokers', '0'], env);
    expect(r2.code).toBe(2);
    expect(r2.stderr).toMatch(/brokers: replication "log" .* needs at least 1 broker/);
    expect(existsSync(join(stateDir, 'clusters', `${cluster}-bad`))).toBe(false);
  });
  it('no Docker daemon with --runtime docker -> exit 3 naming the fix', async () => {
    const r = await dvote([...bad, 'up', '--runtime', 'docker', '--managers', '1', '--brokers', '0', '--shards', '0'], {
      ...env,
      DOCKER_HOST: 'unix:///nonexistent/docker.sock',
    });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/cannot reach Docker.*(scripts\/setup\.sh|--runtime process)/);
  });
});
