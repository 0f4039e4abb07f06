// The dvote node image, built for real on the local Docker engine with no
// registry. Needs a running engine and mmdebstrap (scripts/setup.sh); without
// them these tests FAIL and say so, they never pass silently.
//
// Builds run on a copy of the project (bundle + templates) in a temp folder,
// so the bundle can be changed without touching dist/.
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerEngine } from '../../src/runtime/docker.js';
import {
  APP_IMAGE_LATEST,
  BASE_RECIPE,
  ImageBuildError,
  NODE_PACKAGE,
  appDockerfile,
  baseImageTag,
  debianSourcesFromApt,
  ensureImage,
  imageInputsHash,
  pruneImages,
} from '../../src/runtime/images.js';
import type { ImageBuildResult, ImageInputs } from '../../src/runtime/images.js';

const run = promisify(execFile);
const PROJECT_ROOT = resolve(import.meta.dirname, '../..');
const BUNDLE = join(PROJECT_ROOT, 'dist', 'services', 'node-main.js');
const COLD_BUILD_TIMEOUT_MS = 900_000;

describe('imageInputsHash (pure)', () => {
  const inputs: ImageInputs = {
    base: 'dvote-base:0123456789abcdef',
    node: NODE_PACKAGE,
    dockerfile: appDockerfile('dvote-base:0123456789abcdef', true),
    files: [
      { path: 'app/node-main.js', sha256: 'a'.repeat(64), executable: false },
      { path: 'image/usr/local/bin/dvote-node', sha256: 'b'.repeat(64), executable: true },
    ],
  };

  it('is stable, 16 hex digits, and ignores file order', () => {
    const hash = imageInputsHash(inputs);
    expect(hash).toMatch(/^[0-9a-f]{16}$/);
    expect(imageInputsHash({ ...inputs, files: [...inputs.files].reverse() })).toBe(hash);
    expect(imageInputsHash(structuredClone(inputs))).toBe(hash);
  });

  it('changes when the bundle, a file mode, the Dockerfile, the base or Node change', () => {
    const hash = imageInputsHash(inputs);
    const [bundle, script] = inputs.files as [ImageInputs['files'][0], ImageInputs['files'][0]];
    const variants: ImageInputs[] = [
      { ...inputs, files: [{ ...bundle, sha256: 'c'.repeat(64) }, script] },
      { ...inputs, files: [bundle, { ...script, executable: false }] },
      { ...inputs, files: [bundle, { ...script, path: 'image/usr/bin/dvote-node' }] },
      { ...inputs, files: [bundle] },
      { ...inputs, dockerfile: `${inputs.dockerfile}# changed\n` },
      { ...inputs, base: 'dvote-base:fedcba9876543210' },
      { ...inputs, node: { ...NODE_PACKAGE, version: '22.0.0' } },
      { ...inputs, node: undefined },
    ];
    const hashes = variants.map((v) => imageInputsHash(v));
    for (const h of hashes) expect(h).not.toBe(hash);
    expect(new Set(hashes).size).toBe(hashes.length);
  });

  it('names the base by its recipe', () => {
    expect(baseImageTag()).toMatch(/^dvote-base:[0-9a-f]{16}$/);
    expect(baseImageTag(structuredClone(BASE_RECIPE))).toBe(baseImageTag());
    expect(baseImageTag({ ...BASE_RECIPE, packages: [...BASE_RECIPE.packages, 'curl'] })).not.toBe(baseImageTag());
    expect(baseImageTag({ ...BASE_RECIPE, version: BASE_RECIPE.version + 1 })).not.toBe(baseImageTag());
  });

  it('reads Debian sources from deb822 and one-line apt files', () => {
    const deb822 = [
      'Types: deb',
      '# http://snapshot.debian.org/archive/debian/20250520T000000Z',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm bookworm-updates',
      'Components: main',
      'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg',
      '',
      'Types: deb',
      'URIs: http://deb.debian.org/debian-security',
      'Suites: bookworm-security',
      'Components: main',
      '',
      'Types: deb-src',
      'URIs: http://deb.debian.org/debian',
      'Suites: bookworm',
      'Components: main',
      '',
      'Types: deb',
      'URIs: https://deb.nodesource.com/node_20.x',
      'Suites: nodistro',
      'Components: main',
    ].join('\n');
    const oneLine = [
      'deb [arch=amd64] http://mirror.example/debian bookworm main contrib',
      '# deb http://commented.example/debian bookworm main',
      'deb https://packages.cloud.google.com/apt cloud-sdk-bookworm main',
    ].join('\n');
    expect(debianSourcesFromApt([deb822, oneLine], 'bookworm')).toEqual([
      'deb http://deb.debian.org/debian bookworm main',
      'deb http://deb.debian.org/debian bookworm-updates main',
      'deb http://deb.debian.org/debian-security bookworm-security main',
      'deb http://mirror.example/debian bookworm main contrib',
    ]);
  });
});

describe('ensureImage errors', () => {
  it('names the fix when Docker is unreachable', async () => {
    const engine = DockerEngine.connect({ socketPath: '/tmp/dvote-no-such-docker.sock' });
    const err = await ensureImage(engine, { projectRoot: PROJECT_ROOT }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ImageBuildError);
    expect((err as ImageBuildError).code).toBe('DOCKER_UNAVAILABLE');
    expect((err as ImageBuildError).message).toBe(
      'cannot reach Docker at /tmp/dvote-no-such-docker.sock (ENOENT): start dockerd (scripts/setup.sh) or use --runtime process',
    );
  });
});

// A cold build (base root file system from Debian) takes one to two minutes.
describe('dvote node image on the local Docker engine', { timeout: COLD_BUILD_TIMEOUT_MS }, () => {
  const engine = DockerEngine.connect();
  let dockerProblem: string | undefined;
  let root: string;
  const extraTags: string[] = [];

  // Loud on purpose: CI always has Docker, so its absence is a failure.
  const requireDocker = (): void => {
    if (dockerProblem) {
      throw new Error(
        `Docker is not reachable, so the image tests cannot run: ${dockerProblem}. Run scripts/setup.sh (as root) first.`,
      );
    }
  };

  beforeAll(async () => {
    try {
      await engine.ping();
    } catch (err) {
      dockerProblem = err instanceof Error ? err.message : String(err);
    }
    // A copy of the project's image inputs that the tests may change.
    root = await mkdtemp(join(tmpdir(), 'dvote-images-test-'));
    await mkdir(join(root, 'dist', 'services'), { recursive: true });
    await cp(BUNDLE, join(root, 'dist', 'services', 'node-main.js')).catch(() => {
      throw new Error(`${BUNDLE} missing: run npm run build before the integration tests`);
    });
    await cp(`${BUNDLE}.map`, join(root, 'dist', 'services', 'node-main.js.map')).catch(() => {});
    await cp(join(PROJECT_ROOT, 'templates'), join(root, 'templates'), { recursive: true });
  });

  afterAll(async () => {
    // Point dvote-node:latest back at the project's real image first: builds in
    // this suite moved it, and an image it still names would only be untagged.
    if (!dockerProblem && firstBuild) await ensureImage(engine, { projectRoot: PROJECT_ROOT });
    for (const tag of extraTags) await engine.removeImage(tag); // absent ones are fine
    if (root) await rm(root, { recursive: true, force: true });
  });

  const dvoteNodeTags = async (): Promise<string[]> => {
    const { stdout } = await run('docker', ['images', '--format', '{{.Repository}}:{{.Tag}}', 'dvote-node']);
    return stdout.trim().split('\n').sort();
  };

  // Not `docker run --rm`: its container is removed after the client returns,
  // and would still hold the image when the suite removes it.
  let runs = 0;
  const dockerRun = async (image: string, ...cmd: string[]): Promise<string> => {
    const name = `dvote-images-test-${process.pid}-${++runs}`;
    try {
      const { stdout } = await run('docker', ['run', '--name', name, image, ...cmd], { timeout: 60_000 });
      return stdout.trim();
    } finally {
      await run('docker', ['rm', '-f', name]).catch(() => {});
    }
  };

  // Every test needs the image; the first one to ask builds it (and reports the time).
  let firstBuild: Promise<ImageBuildResult> | undefined;
  const builtImage = (): Promise<ImageBuildResult> => {
    requireDocker();
    firstBuild ??= ensureImage(engine, { projectRoot: root });
    return firstBuild;
  };

  it(
    'builds the image from Debian packages and the npm Node binary',
    async () => {
      const started = performance.now();
      const first = await builtImage();
      const ms = Math.round(performance.now() - started);
      expect(first.tag).toMatch(/^dvote-node:[0-9a-f]{16}$/);
      expect(first.baseTag).toBe(baseImageTag());
      expect(await engine.hasImage(first.baseTag)).toBe(true);
      expect(first.runtimeTag).toMatch(/^dvote-runtime:[0-9a-f]{16}$/);
      expect(await engine.hasImage(first.runtimeTag ?? '')).toBe(true);
      const latest = await engine.inspectImage(APP_IMAGE_LATEST);
      expect(latest?.id).toBe(first.imageId);
      expect(latest?.entrypoint).toEqual(['/usr/bin/tini', '--']);
      expect(latest?.labels['io.dvote.inputs']).toBe(first.tag.split(':')[1]);
      console.info(
        `[images] first ensureImage: ${ms} ms, cached=${first.cached}, phases=${JSON.stringify(first.phases)}, size=${(first.sizeBytes / 1e6).toFixed(0)} MB`,
      );
    },
  );

  it('is a cached no-op the second time (< 2 s)', async () => {
    const first = await builtImage();
    const started = performance.now();
    const again = await ensureImage(engine, { projectRoot: root });
    const ms = performance.now() - started;
    expect(again.cached).toBe(true);
    expect(again.tag).toBe(first.tag);
    expect(again.imageId).toBe(first.imageId);
    expect(ms).toBeLessThan(2_000);
    console.info(`[images] cached ensureImage: ${ms.toFixed(0)} ms`);
  });

  it('runs the node program and PostgreSQL 15 in a container', async () => {
    const first = await builtImage();
    const tag = first.tag;
    expect(await dockerRun(tag, 'node', '/opt/dvote/node-main.js', '--version')).toBe(
      `dvote-node 0.1.0 node v${NODE_PACKAGE.version}`,
    );
    expect(await dockerRun(tag, '/usr/lib/postgresql/15/bin/postgres', '--version')).toMatch(
      /^postgres \(PostgreSQL\) 15\.\d+/,
    );
    // initdb refuses root; the postgres user and its socket directory come with the image.
    const pg = await dockerRun(
      tag,
      'su',
      'postgres',
      '-s',
      '/bin/sh',
      '-c',
      'initdb -D /tmp/pg >/dev/null && pg_ctl -D /tmp/pg -o "-c listen_addresses=" -w start >/dev/null && psql -Atc "select 6*7" postgres',
    );
    expect(pg).toBe('42');
  });

  it('rebuilds only the app layer when the bundle changes', async () => {
    const first = await builtImage();
    const bundle = join(root, 'dist', 'services', 'node-main.js');
    const original = await readFile(bundle, 'utf8');
    await writeFile(bundle, `${original}\n// changed by images.test.ts ${Date.now()}\n`);
    try {
      const started = performance.now();
      const changed = await ensureImage(engine, { projectRoot: root });
      const ms = Math.round(performance.now() - started);
      extraTags.push(changed.tag);
      expect(changed.cached).toBe(false);
      expect(changed.tag).not.toBe(first.tag);
      expect(changed.phases.find((p) => p.name === 'base')?.cached).toBe(true);
      expect(changed.phases.find((p) => p.name === 'node')?.cached).toBe(true);
      expect(await dockerRun(changed.tag, 'tail', '-n', '1', '/opt/dvote/node-main.js')).toMatch(/changed by images\.test\.ts/);
      expect(await dockerRun(changed.tag, 'dvote-node', '--version')).toMatch(/^dvote-node /);
      console.info(`[images] app rebuild after a bundle change: ${ms} ms, phases=${JSON.stringify(changed.phases)}`);
    } finally {
      await writeFile(bundle, original);
    }
  });

  it('prunes app images the sources no longer build, and keeps the rest', async () => {
    const first = await builtImage();
    // Keep every dvote image that exists now: other work on this machine may need them.
    const { stdout } = await run('docker', ['images', '--format', '{{.Repository}}:{{.Tag}}', '--filter', 'reference=dvote-*']);
    const existing = stdout.trim().split('\n').filter(Boolean);
    const bundle = join(root, 'dist', 'services', 'node-main.js');
    const original = await readFile(bundle, 'utf8');
    await writeFile(bundle, `${original}\n// stale build for the prune test ${Date.now()}\n`);
    let stale: ImageBuildResult;
    try {
      stale = await ensureImage(engine, { projectRoot: root });
      extraTags.push(stale.tag);
    } finally {
      await writeFile(bundle, original);
    }
    await ensureImage(engine, { projectRoot: root }); // latest back on the first image
    const pruned = await pruneImages(engine, { keep: existing });
    expect(pruned.removed).toEqual([stale.tag]);
    expect(await engine.hasImage(stale.tag)).toBe(false);
    for (const tag of [first.tag, first.runtimeTag ?? '', first.baseTag, APP_IMAGE_LATEST]) {
      expect(await engine.hasImage(tag)).toBe(true);
    }
  });

  it('fails with a named fix when the bundle is missing', async () => {
    requireDocker();
    const empty = await mkdtemp(join(tmpdir(), 'dvote-images-empty-'));
    try {
      const err = await ensureImage(engine, { projectRoot: empty }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ImageBuildError);
      expect((err as ImageBuildError).code).toBe('BUNDLE_MISSING');
      expect((err as ImageBuildError).message).toMatch(/dist\/services\/node-main\.js missing: run npm run build$/);
    } finally {
      await rm(empty, { recursive: true, force: true });
    }
  });

  it('builds templates/Dockerfile on a local Node image (the registry path)', async () => {
    const first = await builtImage();
    // Our own image stands in for node:22-bookworm-slim: it has Node and apt.
    const missing = await ensureImage(engine, { projectRoot: root, from: 'dockerfile', nodeImage: 'dvote-no-such-image:1' }).catch(
      (e: unknown) => e,
    );
    expect((missing as ImageBuildError).code).toBe('BASE_IMAGE_MISSING');
    expect((missing as ImageBuildError).message).toMatch(/^dvote-no-such-image:1 is not present locally: docker pull/);

    const built = await ensureImage(engine, { projectRoot: root, from: 'dockerfile', nodeImage: first.tag });
    extraTags.push(built.tag);
    expect(built.tag).not.toBe(first.tag);
    expect(await dockerRun(built.tag, 'node', '/opt/dvote/node-main.js', '--version')).toMatch(/^dvote-node /);
  });

  it('refuses a broken root file system tar and keeps no image of it', async () => {
    requireDocker();
    const dir = await mkdtemp(join(tmpdir(), 'dvote-images-junk-'));
    try {
      const junk = join(dir, 'rootfs.tar');
      await writeFile(junk, 'this is not a tar file\n'.repeat(100));
      const err = await engine.importRootfs(junk, 'dvote-images-test-junk:1').catch((e: unknown) => e);
      expect((err as { code?: string }).code).toBe('DOCKER_IMPORT_FAILED');
      expect((err as Error).message).toMatch(/invalid tar header/);
      expect(await engine.hasImage('dvote-images-test-junk:1')).toBe(false);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('removes what a failed build made and names the failing step', async () => {
    const first = await builtImage();
    const broken = await mkdtemp(join(tmpdir(), 'dvote-images-broken-'));
    try {
      await cp(root, broken, { recursive: true });
      await writeFile(join(broken, 'templates', 'Dockerfile'), 'ARG NODE_IMAGE=scratch\nFROM ${NODE_IMAGE}\nRUN exit 7\n');
      const tagsBefore = await dvoteNodeTags();
      const err = await ensureImage(engine, { projectRoot: broken, from: 'dockerfile', nodeImage: first.tag }).catch(
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(ImageBuildError);
      expect((err as ImageBuildError).code).toBe('APP_BUILD_FAILED');
      expect((err as ImageBuildError).message).toMatch(/returned a non-zero code: 7/);
      expect(await dvoteNodeTags()).toEqual(tagsBefore);
      expect((await engine.inspectImage(APP_IMAGE_LATEST))?.id).not.toBeUndefined();
    } finally {
      await rm(broken, { recursive: true, force: true });
    }
  });
});
