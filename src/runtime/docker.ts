// The one adapter between dvote and the Docker Engine API: the only file that
// imports dockerode. Everything else talks to DockerEngine, so that the
// process runtime (and a later swarm runtime) can sit beside it.
//
// API version: paths are left unversioned, so the engine answers in its own
// newest version (1.41 for Debian bookworm's engine 20.10) and a newer engine
// keeps working. Pin one with DockerConnectOptions.apiVersion if ever needed.
import Dockerode from 'dockerode';
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Readable } from 'node:stream';

export type DockerEngineErrorCode =
  | 'DOCKER_UNAVAILABLE' // no answer on the socket: engine down, wrong DOCKER_HOST, no permission
  | 'DOCKER_NOT_FOUND' // the named object does not exist
  | 'DOCKER_BUILD_FAILED'
  | 'DOCKER_IMPORT_FAILED'
  | 'DOCKER_API'; // any other answer the engine refused

/** `message` is one line naming the problem and then the fix (`hint`). */
export class DockerEngineError extends Error {
  override readonly name = 'DockerEngineError';
  /** The last lines of build output before a failed build, for display. */
  readonly output: string[];
  constructor(
    readonly code: DockerEngineErrorCode,
    problem: string,
    readonly hint: string,
    options: { cause?: unknown; output?: string[] } = {},
  ) {
    super(`${problem}: ${hint}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.output = options.output ?? [];
  }
}

export interface DockerConnectOptions {
  /** Unix socket path; default: DOCKER_HOST, else /var/run/docker.sock. */
  socketPath?: string;
  /** Engine API version to pin, such as "1.41"; default: unversioned paths. */
  apiVersion?: string;
  /** How long to wait for a connection to be set up (not for a reply). */
  connectTimeoutMs?: number;
}

export interface DockerEngineVersion {
  ok: true;
  version: string;
  apiVersion: string;
}

export interface ImageSummary {
  id: string;
  tags: string[];
  sizeBytes: number;
  created: string;
  labels: Record<string, string>;
  env: string[];
  entrypoint: string[];
  cmd: string[];
}

/** A build context: a directory (sent as an uncompressed tar) or a ready tar stream. */
export type BuildContext = { dir: string } | NodeJS.ReadableStream;

export interface BuildImageOptions {
  /** Tags the image gets; the first names it in messages. */
  tags: string[];
  /** Dockerfile path inside the context; default "Dockerfile". */
  dockerfile?: string;
  buildArgs?: Record<string, string>;
  labels?: Record<string, string>;
  /** Ignore the engine's layer cache. */
  noCache?: boolean;
  /** Each line of build output ("Step 2/6 : COPY ..."), for progress display. */
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
}

export interface ImportRootfsOptions {
  /** Dockerfile-style instructions applied on import: `ENV K=V`, `CMD [...]`. */
  changes?: string[];
  message?: string;
  onOutput?: (line: string) => void;
  signal?: AbortSignal;
}

interface EngineProgressLine {
  stream?: string;
  status?: string;
  error?: string;
  errorDetail?: { message?: string };
  aux?: { ID?: string };
}

interface DockerodeHttpError {
  statusCode?: number;
  json?: { message?: string } | null;
  reason?: string;
  code?: string;
  message?: string;
  name?: string;
}

const DEFAULT_SOCKET = '/var/run/docker.sock';
const DEFAULT_CONNECT_TIMEOUT_MS = 5_000;
const PING_TIMEOUT_MS = 5_000;
// Node's socket errors that mean "nobody answered", as opposed to a refusal.
const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ENOENT',
  'EACCES',
  'EPERM',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ECONNRESET',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
]);
const OUTPUT_TAIL_LINES = 15;

export class DockerEngine {
  private constructor(
    private readonly docker: Dockerode,
    /** Where the engine is, as people would write it: a socket path or DOCKER_HOST. */
    readonly endpoint: string,
  ) {}

  /** Creates a client; does not contact the engine (see ping). */
  static connect(opts: DockerConnectOptions = {}): DockerEngine {
    const dockerHost = process.env.DOCKER_HOST;
    const endpoint = opts.socketPath ?? (dockerHost && dockerHost !== '' ? dockerHost : DEFAULT_SOCKET);
    // connectionTimeout is honoured by docker-modem but missing from the typings.
    const options: Dockerode.DockerOptions & { connectionTimeout?: number } = {
      connectionTimeout: opts.connectTimeoutMs ?? DEFAULT_CONNECT_TIMEOUT_MS,
    };
    if (opts.socketPath !== undefined) options.socketPath = opts.socketPath;
    else if (!dockerHost) options.socketPath = DEFAULT_SOCKET;
    if (opts.apiVersion !== undefined) options.version = `v${opts.apiVersion.replace(/^v/, '')}`;
    return new DockerEngine(new Dockerode(options), endpoint);
  }

  /** Asks the engine for its version; throws DOCKER_UNAVAILABLE when nobody answers. */
  async ping(opts: { timeoutMs?: number } = {}): Promise<DockerEngineVersion> {
    const timeoutMs = opts.timeoutMs ?? PING_TIMEOUT_MS;
    try {
      // dockerode honours abortSignal here; its typings do not list the option.
      const version = this.docker.version as (opts: { abortSignal: AbortSignal }) => Promise<Dockerode.DockerVersion>;
      const v = await version.call(this.docker, { abortSignal: AbortSignal.timeout(timeoutMs) });
      return { ok: true, version: v.Version, apiVersion: v.ApiVersion };
    } catch (err) {
      if (isAbort(err)) {
        throw this.unavailable(`no answer within ${timeoutMs} ms`, err);
      }
      throw this.translate(err, 'ask the engine for its version');
    }
  }

  async inspectImage(ref: string): Promise<ImageSummary | undefined> {
    try {
      const info = await this.docker.getImage(ref).inspect();
      return {
        id: info.Id,
        tags: info.RepoTags ?? [],
        sizeBytes: info.Size,
        created: info.Created,
        labels: info.Config?.Labels ?? {},
        env: info.Config?.Env ?? [],
        entrypoint: toArray(info.Config?.Entrypoint),
        cmd: toArray(info.Config?.Cmd),
      };
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw this.translate(err, `inspect image ${ref}`);
    }
  }

  /** Tagged images whose `repo:tag` matches a reference pattern such as `dvote-node` or `dvote-*`. */
  async listImages(reference: string): Promise<{ id: string; tags: string[]; created: number; sizeBytes: number }[]> {
    try {
      const images = await this.docker.listImages({ filters: { reference: [reference] } });
      return images.map((i) => ({ id: i.Id, tags: i.RepoTags ?? [], created: i.Created, sizeBytes: i.Size }));
    } catch (err) {
      throw this.translate(err, `list images ${reference}`);
    }
  }

  async hasImage(ref: string): Promise<boolean> {
    return (await this.inspectImage(ref)) !== undefined;
  }

  /** Gives an existing image one more name (`repo:tag`). */
  async tagImage(ref: string, target: string): Promise<void> {
    const { repo, tag } = splitReference(target);
    try {
      await this.docker.getImage(ref).tag({ repo, tag });
    } catch (err) {
      throw this.translate(err, `tag image ${ref} as ${target}`);
    }
  }

  /** Removes an image by name or id; absent images are not an error. */
  async removeImage(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    try {
      await this.docker.getImage(ref).remove({ force: opts.force ?? false });
    } catch (err) {
      if (httpStatus(err) === 404) return;
      throw this.translate(err, `remove image ${ref}`);
    }
  }

  /** Equivalent of `docker import <tar> <tag>`: a root file system tar becomes an image. Returns its id. */
  async importRootfs(tarPath: string, tag: string, opts: ImportRootfsOptions = {}): Promise<string> {
    const { repo, tag: tagPart } = splitReference(tag);
    const query: Record<string, unknown> = { repo, tag: tagPart };
    if (opts.changes && opts.changes.length > 0) query.changes = opts.changes;
    if (opts.message !== undefined) query.message = opts.message;
    if (opts.signal) query.abortSignal = opts.signal;
    let lines: EngineProgressLine[];
    try {
      const stream = await this.docker.importImage(createReadStream(tarPath), query);
      lines = await readProgress(stream, (line) => {
        if (line.status && opts.onOutput) opts.onOutput(line.status);
      });
    } catch (err) {
      throw this.translate(err, `import ${tarPath} as ${tag}`, 'DOCKER_IMPORT_FAILED');
    }
    const failure = lines.find((l) => l.error !== undefined);
    if (failure) {
      throw new DockerEngineError(
        'DOCKER_IMPORT_FAILED',
        `docker import of ${tag} failed: ${oneLine(failure.errorDetail?.message ?? failure.error ?? '')}`,
        `check that ${tarPath} is a complete root file system tar`,
      );
    }
    const image = await this.inspectImage(tag);
    if (!image) {
      throw new DockerEngineError(
        'DOCKER_IMPORT_FAILED',
        `docker import of ${tag} reported success but the image is not there`,
        `see the engine's log (/var/log/dockerd.log)`,
      );
    }
    return image.id;
  }

  /** Equivalent of `docker build` with the classic builder. Returns the image id. */
  async buildImage(context: BuildContext, opts: BuildImageOptions): Promise<string> {
    const name = opts.tags[0] ?? '(untagged)';
    if ('dir' in context && !(await isDirectory(context.dir))) {
      throw new DockerEngineError(
        'DOCKER_BUILD_FAILED',
        `build context ${context.dir} is not a directory`,
        'pass the directory that holds the Dockerfile',
      );
    }
    const tarProcess = 'dir' in context ? spawnTar(context.dir, opts.signal) : undefined;
    const body: NodeJS.ReadableStream = tarProcess ? tarProcess.stdout : (context as NodeJS.ReadableStream);
    // `t` may repeat in the query; docker-modem writes an array as repeated keys.
    const query: Omit<Dockerode.ImageBuildOptions, 't'> & { t?: string | string[] } = {
      t: opts.tags,
      rm: true,
      forcerm: true, // remove intermediate containers when a step fails, too
      pull: false, // base images are local: nothing can be pulled here
    };
    if (opts.dockerfile !== undefined) query.dockerfile = opts.dockerfile;
    if (opts.buildArgs) query.buildargs = opts.buildArgs;
    if (opts.labels) query.labels = opts.labels;
    if (opts.noCache) query.nocache = true;
    if (opts.signal) query.abortSignal = opts.signal;

    const tail: string[] = [];
    let imageId: string | undefined;
    let lines: EngineProgressLine[];
    try {
      const stream = await this.docker.buildImage(body, query as Dockerode.ImageBuildOptions);
      lines = await readProgress(stream, (line) => {
        if (line.aux?.ID) imageId = line.aux.ID;
        const text = (line.stream ?? line.status ?? '').trimEnd();
        if (text === '') return;
        for (const part of text.split('\n')) {
          tail.push(part);
          if (tail.length > OUTPUT_TAIL_LINES) tail.shift();
          opts.onOutput?.(part);
        }
      });
    } catch (err) {
      tarProcess?.kill();
      throw this.translate(err, `build image ${name}`, 'DOCKER_BUILD_FAILED');
    }
    const tarResult = tarProcess ? await tarProcess.done : undefined;
    const failure = lines.find((l) => l.error !== undefined);
    if (failure) {
      const reason = oneLine(failure.errorDetail?.message ?? failure.error ?? '');
      throw new DockerEngineError(
        'DOCKER_BUILD_FAILED',
        `docker build of ${name} failed: ${reason}`,
        'the build output shows the failing step',
        { output: [...tail] },
      );
    }
    if (tarResult && tarResult.code !== 0) {
      throw new DockerEngineError(
        'DOCKER_BUILD_FAILED',
        `packing the build context ${'dir' in context ? context.dir : ''} failed: ${oneLine(tarResult.stderr)}`,
        'check that the context directory is readable',
      );
    }
    if (!imageId) {
      // Engines before API 1.30 print "Successfully built <id>" instead of aux.ID.
      const built = await this.inspectImage(name);
      if (!built) {
        throw new DockerEngineError(
          'DOCKER_BUILD_FAILED',
          `docker build of ${name} ended without an image`,
          `see the engine's log (/var/log/dockerd.log)`,
        );
      }
      imageId = built.id;
    }
    return imageId;
  }

  private unavailable(reason: string, cause: unknown): DockerEngineError {
    return new DockerEngineError(
      'DOCKER_UNAVAILABLE',
      `cannot reach Docker at ${this.endpoint} (${reason})`,
      'start dockerd (scripts/setup.sh) or use --runtime process',
      { cause },
    );
  }

  /** Maps a dockerode failure to one typed error with a one-line message. */
  private translate(err: unknown, action: string, fallback: DockerEngineErrorCode = 'DOCKER_API'): DockerEngineError {
    if (err instanceof DockerEngineError) return err;
    const e = (err ?? {}) as DockerodeHttpError;
    if (e.code === 'EACCES' || e.code === 'EPERM') {
      return new DockerEngineError(
        'DOCKER_UNAVAILABLE',
        `cannot reach Docker at ${this.endpoint} (permission denied)`,
        'run as root or as a member of the docker group, or use --runtime process',
        { cause: err },
      );
    }
    if ((e.code && UNREACHABLE_CODES.has(e.code)) || /socket hang up/i.test(e.message ?? '')) {
      return this.unavailable(e.code ?? oneLine(e.message ?? 'no answer'), err);
    }
    if (isAbort(err)) {
      return new DockerEngineError(fallback, `${action}: aborted`, 'run the command again', { cause: err });
    }
    const status = e.statusCode;
    // docker-modem's message is "(HTTP code 500) server error - <the engine's reason>".
    const fromMessage = e.message?.replace(/^\(HTTP code \d+\) [^-]*- /, '');
    const detail = oneLine(e.json?.message ?? fromMessage ?? e.reason ?? String(err));
    if (status === 404) {
      return new DockerEngineError('DOCKER_NOT_FOUND', `cannot ${action}: ${detail}`, 'check the name', {
        cause: err,
      });
    }
    return new DockerEngineError(
      fallback,
      `cannot ${action}: ${status ? `engine answered ${status}: ` : ''}${detail}`,
      `see the engine's log (/var/log/dockerd.log)`,
      { cause: err },
    );
  }
}

/** Splits `repo:tag` (a registry host may carry a port: `host:5000/repo:tag`). */
export function splitReference(ref: string): { repo: string; tag: string } {
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  if (colon > slash) return { repo: ref.slice(0, colon), tag: ref.slice(colon + 1) };
  return { repo: ref, tag: 'latest' };
}

/** Reads the engine's newline-delimited JSON progress stream to its end. */
async function readProgress(
  stream: NodeJS.ReadableStream,
  onLine: (line: EngineProgressLine) => void,
): Promise<EngineProgressLine[]> {
  const lines: EngineProgressLine[] = [];
  let buffered = '';
  const take = (raw: string): void => {
    const text = raw.trim();
    if (text === '') return;
    let parsed: EngineProgressLine;
    try {
      parsed = JSON.parse(text) as EngineProgressLine;
    } catch {
      parsed = { stream: text };
    }
    lines.push(parsed);
    onLine(parsed);
  };
  for await (const chunk of stream as AsyncIterable<Buffer | string>) {
    buffered += typeof chunk === 'string' ? chunk : chunk.toString('utf8');
    let newline: number;
    while ((newline = buffered.indexOf('\n')) >= 0) {
      take(buffered.slice(0, newline));
      buffered = buffered.slice(newline + 1);
    }
  }
  take(buffered);
  return lines;
}

interface TarProcess {
  stdout: Readable;
  kill(): void;
  done: Promise<{ code: number; stderr: string }>;
}

// An uncompressed tar from the system's tar: dockerode would gzip the context
// (seconds of CPU for a 120 MB Node binary) to send it over a local socket.
function spawnTar(dir: string, signal?: AbortSignal): TarProcess {
  const child = spawn('tar', ['-C', dir, '--numeric-owner', '-cf', '-', '.'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    ...(signal ? { signal } : {}),
  });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
  });
  const done = new Promise<{ code: number; stderr: string }>((resolve) => {
    child.on('error', (err) => resolve({ code: -1, stderr: err.message }));
    child.on('close', (code) => resolve({ code: code ?? -1, stderr }));
  });
  return { stdout: child.stdout, kill: () => child.kill(), done };
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (info) => info.isDirectory(),
    () => false,
  );
}

function httpStatus(err: unknown): number | undefined {
  return (err as DockerodeHttpError | undefined)?.statusCode;
}

function isAbort(err: unknown): boolean {
  const name = (err as DockerodeHttpError | undefined)?.name;
  return name === 'AbortError' || name === 'TimeoutError';
}

function toArray(value: string | string[] | null | undefined): string[] {
  if (value === undefined || value === null) return [];
  return Array.isArray(value) ? value : [value];
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim();
}
