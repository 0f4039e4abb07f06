// Run the real CLI (bin/dvote.js -> dist/cli/main.js) as a child process.
import { execa } from 'execa';
import { resolve } from 'node:path';

export const DVOTE_BIN = resolve(import.meta.dirname, '../../bin/dvote.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout parsed as JSON when it is a JSON document. */
  json: Record<string, unknown> | null;
  ms: number;
}

export async function dvote(args: string[], env: Record<string, string> = {}, timeoutMs = 240_000): Promise<CliResult> {
  const t0 = performance.now();
  const r = await execa(process.execPath, [DVOTE_BIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', ...env },
    reject: false,
    timeout: timeoutMs,
    stdin: 'ignore',
  });
  let json: Record<string, unknown> | null = null;
  const out = String(r.stdout ?? '');
  if (out.trim().startsWith('{')) {
    try {
      json = JSON.parse(out) as Record<string, unknown>;
    } catch {
      json = null;
    }
  }
  return { code: r.exitCode ?? -1, stdout: out, stderr: String(r.stderr ?? ''), json, ms: performance.now() - t0 };
}

export function describeResult(r: CliResult): string {
  return `exit ${r.code}\n--- stdout\n${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`;
}
