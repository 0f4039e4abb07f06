import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { benchAcceptanceFlow } from './bench.shared.js';

const stateDir = mkdtempSync(join(tmpdir(), 'dvote-bench-proc-'));
afterAll(() => rmSync(stateDir, { recursive: true, force: true }));
benchAcceptanceFlow('process', `bp${process.pid % 10000}`, { DVOTE_STATE_DIR: stateDir });
