// The package root (the directory with package.json), from wherever this code
// runs: dist/cli/main.js once bundled, or src/ under vitest/tsx.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

let cached: string | null = null;

export function projectRoot(): string {
  if (cached) return cached;
  let dir = import.meta.dirname;
  for (let i = 0; i < 8; i++) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'templates'))) {
      cached = dir;
      return dir;
    }
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new Error(`cannot find the dvote package root above ${import.meta.dirname}`);
}
