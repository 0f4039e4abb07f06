// Issue 5 part A on the docker runtime, through the real CLI: the same flow as
// on local processes, with each PostgreSQL in its own container (PostgreSQL
// 15 from the image, run as the image's postgres user).
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect } from 'vitest';
import { DockerRuntime } from '../../src/runtime/docker-runtime.js';
import { dvote } from '../utils/cli.js';
import { ok, shardFlowTests, type FlowOptions } from './shard-flow.shared.js';

const env: Record<string, string> = {};
const cluster = `sd${process.pid % 10000}`;
const upArgs = ['up', '--runtime', 'docker', '--managers', '1', '--brokers', '0', '--shards', '2', '--replicas', '0', '--replication', 'sync'];

beforeAll(async () => {
  const r = await execa('docker', ['info'], { reject: false });
  if (r.exitCode !== 0) throw new Error('Docker is not reachable: these tests need it (run scripts/setup.sh)');
});

afterAll(async () => {
  await dvote(['--cluster', cluster, 'down', '--volumes'], env);
});

describe('voting shards on docker', () => {
  const opts: FlowOptions = { cluster, env, runtime: new DockerRuntime(), upArgs };

  beforeAll(async () => {
    const r = ok(await dvote(['--cluster', cluster, ...upArgs, '--json'], env, 600_000));
    expect(r.json?.runtime).toBe('docker');
  }, 600_000);

  shardFlowTests(() => opts);
});
