// Build: the CLI (dependencies left external, resolved from node_modules) and
// the node program that runs inside every container / child process (one
// self-contained bundle, so an image needs no node_modules).
import { build } from 'esbuild';
import { rmSync } from 'node:fs';

rmSync('dist', { recursive: true, force: true });

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
  outdir: 'dist',
  packages: 'external',
});

await build({
  ...common,
  entryPoints: { 'services/node-main': 'src/services/node-main.ts' },
  outdir: 'dist',
  // CommonJS dependencies bundled into ESM still call require().
  banner: {
    js: "import { createRequire as __dvoteCreateRequire } from 'node:module'; const require = __dvoteCreateRequire(import.meta.url);",
  },
  external: ['pg-native', 'cpu-features', 'ssh2'],
});
