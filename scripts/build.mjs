// Build: the CLI (dependencies left external, resolved from node_modules) and
// the node program that runs inside every container / child process (one
// self-contained bundle, so an image needs no node_modules).
// Builds into dist.tmp and swaps it into place, so a node restarted while a
// build runs never finds dist/ missing.
import { build } from 'esbuild';
import { existsSync, renameSync, rmSync } from 'node:fs';

const OUT = 'dist.tmp';
rmSync(OUT, { recursive: true, force: true });

const common = {
  platform: 'node',
  target: 'node20',
  format: 'esm',
  sourcemap: 'linked',
  logLevel: 'warning',
  bundle: true,
};

await build({
  ...common,
  entryPoints: { 'cli/main': 'src/cli/main.ts' },
  outdir: OUT,
  packages: 'external',
});

await build({
  ...common,
  entryPoints: { 'services/node-main': 'src/services/node-main.ts', 'services/supervisor': 'src/services/supervisor-main.ts' },
  outdir: OUT,
  // CommonJS dependencies bundled into ESM still call require().
  banner: {
    js: "import { createRequire as __dvoteCreateRequire } from 'node:module'; const require = __dvoteCreateRequire(import.meta.url);",
  },
  external: ['pg-native', 'cpu-features', 'ssh2'],
});

rmSync('dist.old', { recursive: true, force: true });
if (existsSync('dist')) renameSync('dist', 'dist.old');
renameSync(OUT, 'dist');
rmSync('dist.old', { recursive: true, force: true });
