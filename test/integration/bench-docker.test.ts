import { execa } from 'execa';
import { beforeAll } from 'vitest';
import { benchAcceptanceFlow } from './bench.shared.js';

beforeAll(async () => {
  const r = await execa('docker', ['info'], { reject: false });
  if (r.exitCode !== 0) throw new Error('Docker is not reachable: these tests need it (run scripts/setup.sh)');
});
benchAcceptanceFlow('docker', `bd${process.pid % 10000}`, {});
