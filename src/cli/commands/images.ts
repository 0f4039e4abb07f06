import type { Command } from 'commander';
import { DvoteError } from '../../core/errors.js';
import { DockerEngine, DockerEngineError } from '../../runtime/docker.js';
import { ensureImage, ImageBuildError } from '../../runtime/images.js';
import { projectRoot } from '../../runtime/project-root.js';
import type { CommandContext } from '../main.js';

type Run = (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>;

export function registerImages(program: Command, run: Run): void {
  const images = program.command('images').description('the node image (Node + the dvote services + PostgreSQL), built with no registry');
  images
    .command('build')
    .description('build the image from Debian packages and npm (cached by content hash; `up` runs this on demand)')
    .option('--force', 'rebuild the Node and app layers even if cached')
    .option('--rebuild-base', 'also rebuild the Debian root file system')
    .addHelpText('after', '\nExamples:\n  $ dvote images build\n  $ dvote images build --json | jq .phases')
    .action(async (_o, cmd: Command) =>
      run(async (ctx) => {
        const o = cmd.opts() as { force?: boolean; rebuildBase?: boolean };
        let engine: DockerEngine;
        try {
          engine = DockerEngine.connect();
          await engine.ping();
        } catch (e) {
          throw new DvoteError('RUNTIME_UNAVAILABLE', 'cannot reach Docker at /var/run/docker.sock', 'start dockerd (scripts/setup.sh); images are only needed for the docker runtime');
        }
        try {
          const r = await ctx.out.step('building the node image', (update) =>
            ensureImage(engine, {
              projectRoot: projectRoot(),
              ...(o.force ? { force: true } : {}),
              ...(o.rebuildBase ? { rebuildBase: true } : {}),
              onProgress: (p) => update(`${p.phase}: ${p.message}`),
              signal: ctx.signal,
            }),
          );
          ctx.out.document({ schema: 'dvote.images/v1', ...r });
          ctx.out.print(`${r.tag} ${r.cached ? '(cached)' : '(built)'} ${(r.sizeBytes / 1e6).toFixed(0)} MB; phases: ${r.phases.map((p) => `${p.name} ${(p.ms / 1000).toFixed(1)}s${p.cached ? ' cached' : ''}`).join(', ')}`);
        } catch (e) {
          if (e instanceof ImageBuildError || e instanceof DockerEngineError) {
            throw new DvoteError('RUNTIME_UNAVAILABLE', e.message.split(': ')[0]!, e.hint);
          }
          throw e;
        }
      }, cmd),
    );
}
