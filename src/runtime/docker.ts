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
  | 'DOCKER_CONFLICT' // 409: the name is taken, the container is not running / is paused, ...
  | 'DOCKER_PORT_BUSY' // a host port to publish is held by another program or container
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

// --- containers, networks, volumes --------------------------------------------

export type RestartPolicyName = 'no' | 'on-failure' | 'unless-stopped' | 'always';

export interface PortPublish {
  containerPort: number;
  hostPort: number;
  /** Host address to bind; dvote uses 127.0.0.1 only. */
  hostIp: string;
}

export interface ContainerCreateSpec {
  name: string;
  image: string;
  hostname?: string;
  env: string[];
  labels: Record<string, string>;
  /** Overrides the image's CMD. */
  cmd?: string[];
  publish: PortPublish[];
  /** Network (name or id) the container starts on; `aliases` are extra DNS names on it. */
  network: string;
  aliases?: string[];
  /** Named volumes to mount. */
  volumes: { name: string; target: string }[];
  restartPolicy: RestartPolicyName;
  /** Seconds between the stop signal and SIGKILL on `docker stop`. */
  stopTimeoutSeconds?: number;
  /** Rotate the json-file log at this size ("10m"), keeping `logMaxFiles` files. */
  logMaxSize?: string;
  logMaxFiles?: number;
}

export type ContainerStatus = 'created' | 'running' | 'paused' | 'restarting' | 'removing' | 'exited' | 'dead';

export interface ContainerDetails {
  id: string;
  /** Without the leading "/". */
  name: string;
  image: string;
  labels: Record<string, string>;
  status: ContainerStatus;
  running: boolean;
  paused: boolean;
  restarting: boolean;
  exitCode: number;
  oomKilled: boolean;
  /** ISO time of the last start, null when never started. */
  startedAt: string | null;
  finishedAt: string | null;
  /** Automatic restarts since the last manual start. */
  restartCount: number;
  restartPolicy: { name: RestartPolicyName; maximumRetryCount: number };
  /** Networks the container is attached to, by network name. */
  networks: Record<string, { networkId: string; ipAddress: string }>;
  /** Published ports, as the engine reports them while the container runs. */
  published: PortPublish[];
}

export interface ContainerSummary {
  id: string;
  name: string;
  labels: Record<string, string>;
  status: string;
  /** Host ports published by the running container. */
  published: PortPublish[];
}

export interface NetworkSummary {
  id: string;
  name: string;
  labels: Record<string, string>;
  created: string;
  /** Ids of the containers attached now. */
  containers: string[];
}

export interface VolumeSummary {
  name: string;
  labels: Record<string, string>;
  created: string | null;
}

export interface ContainerLogLine {
  stream: 'stdout' | 'stderr';
  line: string;
  /** The engine's RFC 3339 time of the line, with `timestamps`. */
  time?: string;
}

export interface ContainerLogOptions {
  follow?: boolean;
  /** Last n lines; default all. */
  tail?: number;
  /** Only lines from this time on (RFC 3339, inclusive). */
  since?: string;
  /** Fill in ContainerLogLine.time. */
  timestamps?: boolean;
  /** Ends the iteration (without an error) when aborted. */
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

  // --- containers -----------------------------------------------------------------

  /** Creates (does not start) a container; returns its id. */
  async createContainer(spec: ContainerCreateSpec): Promise<string> {
    const exposed: Record<string, object> = {};
    const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
    for (const p of spec.publish) {
      const key = `${p.containerPort}/tcp`;
      exposed[key] = {};
      (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.hostPort) });
    }
    const options: Dockerode.ContainerCreateOptions = {
      name: spec.name,
      Image: spec.image,
      Env: spec.env,
      Labels: spec.labels,
      ExposedPorts: exposed,
      HostConfig: {
        NetworkMode: spec.network,
        PortBindings: bindings,
        RestartPolicy: { Name: spec.restartPolicy, MaximumRetryCount: 0 },
        Mounts: spec.volumes.map((v) => ({ Type: 'volume' as const, Source: v.name, Target: v.target })),
        LogConfig: {
          Type: 'json-file',
          Config: { 'max-size': spec.logMaxSize ?? '10m', 'max-file': String(spec.logMaxFiles ?? 3) },
        },
      },
      NetworkingConfig: { EndpointsConfig: { [spec.network]: { Aliases: spec.aliases ?? [] } } },
    };
    if (spec.hostname !== undefined) options.Hostname = spec.hostname;
    if (spec.cmd !== undefined) options.Cmd = spec.cmd;
    if (spec.stopTimeoutSeconds !== undefined) options.StopTimeout = spec.stopTimeoutSeconds;
    try {
      const container = await this.docker.createContainer(options);
      return container.id;
    } catch (err) {
      throw this.translate(err, `create container ${spec.name}`);
    }
  }

  /** A container by name or id; undefined when there is none. */
  async inspectContainer(ref: string): Promise<ContainerDetails | undefined> {
    let info: Dockerode.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(ref).inspect();
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw this.translate(err, `inspect container ${ref}`);
    }
    const networks: ContainerDetails['networks'] = {};
    for (const [name, n] of Object.entries(info.NetworkSettings?.Networks ?? {})) {
      networks[name] = { networkId: n.NetworkID, ipAddress: n.IPAddress };
    }
    const published: PortPublish[] = [];
    const ports = (info.NetworkSettings?.Ports ?? {}) as Record<string, { HostIp: string; HostPort: string }[] | null>;
    for (const [key, binds] of Object.entries(ports)) {
      const containerPort = Number.parseInt(key, 10);
      for (const b of binds ?? []) {
        published.push({ containerPort, hostPort: Number(b.HostPort), hostIp: b.HostIp });
      }
    }
    const policy = info.HostConfig?.RestartPolicy;
    return {
      id: info.Id,
      name: info.Name.replace(/^\//, ''),
      image: info.Config?.Image ?? info.Image,
      labels: info.Config?.Labels ?? {},
      status: info.State.Status as ContainerStatus,
      running: info.State.Running,
      paused: info.State.Paused,
      restarting: info.State.Restarting,
      exitCode: info.State.ExitCode,
      oomKilled: info.State.OOMKilled,
      startedAt: engineTime(info.State.StartedAt),
      finishedAt: engineTime(info.State.FinishedAt),
      restartCount: info.RestartCount,
      restartPolicy: {
        // The engine reports "" for a container created without a policy.
        name: ((policy?.Name ?? '') === '' ? 'no' : policy?.Name) as RestartPolicyName,
        maximumRetryCount: policy?.MaximumRetryCount ?? 0,
      },
      networks,
      published,
    };
  }

  /** Containers carrying every given label filter ("key" or "key=value"); `all` includes stopped ones. */
  async listContainers(labelFilters: string[], opts: { all?: boolean } = {}): Promise<ContainerSummary[]> {
    try {
      const list = await this.docker.listContainers({
        all: opts.all ?? true,
        ...(labelFilters.length > 0 ? { filters: { label: labelFilters } } : {}),
      });
      return list.map((c) => ({
        id: c.Id,
        name: (c.Names[0] ?? '').replace(/^\//, ''),
        labels: c.Labels ?? {},
        status: c.State,
        published: (c.Ports ?? [])
          .filter((p) => p.PublicPort !== undefined && p.PublicPort > 0)
          .map((p) => ({ containerPort: p.PrivatePort, hostPort: p.PublicPort, hostIp: p.IP ?? '' })),
      }));
    } catch (err) {
      throw this.translate(err, 'list containers');
    }
  }

  /** Starts a created or stopped container; one already running is left alone. */
  async startContainer(ref: string): Promise<void> {
    try {
      await this.docker.getContainer(ref).start();
    } catch (err) {
      if (httpStatus(err) === 304) return;
      throw this.translate(err, `start container ${ref}`);
    }
  }

  /** `docker stop`: the stop signal, then SIGKILL after `timeoutSeconds`. A stopped container is left alone. */
  async stopContainer(ref: string, opts: { timeoutSeconds?: number } = {}): Promise<void> {
    try {
      await this.docker.getContainer(ref).stop(opts.timeoutSeconds === undefined ? {} : { t: opts.timeoutSeconds });
    } catch (err) {
      if (httpStatus(err) === 304) return;
      throw this.translate(err, `stop container ${ref}`);
    }
  }

  /** `docker kill`; a container that is not running gives DOCKER_CONFLICT. */
  async killContainer(ref: string, signal: string): Promise<void> {
    try {
      await this.docker.getContainer(ref).kill({ signal });
    } catch (err) {
      throw this.translate(err, `kill container ${ref}`);
    }
  }

  async pauseContainer(ref: string): Promise<void> {
    try {
      await this.docker.getContainer(ref).pause();
    } catch (err) {
      throw this.translate(err, `pause container ${ref}`);
    }
  }

  async unpauseContainer(ref: string): Promise<void> {
    try {
      await this.docker.getContainer(ref).unpause();
    } catch (err) {
      throw this.translate(err, `unpause container ${ref}`);
    }
  }

  /** Removes a container (force: even a running one); absent containers are not an error. Named volumes stay. */
  async removeContainer(ref: string, opts: { force?: boolean } = {}): Promise<void> {
    try {
      await this.docker.getContainer(ref).remove({ force: opts.force ?? false, v: false });
    } catch (err) {
      if (httpStatus(err) === 404) return;
      // "removal of container ... is already in progress": someone else is removing it.
      if (httpStatus(err) === 409 && /already in progress/i.test(errorText(err))) return;
      throw this.translate(err, `remove container ${ref}`);
    }
  }

  /** `docker update --restart`: takes effect for the next exit of the container. */
  async updateRestartPolicy(ref: string, name: RestartPolicyName): Promise<void> {
    try {
      await this.docker.getContainer(ref).update({ RestartPolicy: { Name: name, MaximumRetryCount: 0 } });
    } catch (err) {
      throw this.translate(err, `update the restart policy of ${ref}`);
    }
  }

  /**
   * The container's output, line by line, stdout and stderr demultiplexed.
   * With `follow`, runs until the container stops or `signal` aborts; a
   * followed stream that ends because the engine went away throws
   * DOCKER_UNAVAILABLE instead of ending quietly.
   */
  async *containerLogs(ref: string, opts: ContainerLogOptions = {}): AsyncGenerator<ContainerLogLine> {
    const signal = opts.signal;
    if (signal?.aborted) return;
    // The engine takes tail=all; the typings only know numbers.
    const query: Omit<Dockerode.ContainerLogsOptions, 'tail'> & { tail: number | string } = {
      stdout: true,
      stderr: true,
      follow: opts.follow ?? false,
      tail: opts.tail ?? 'all',
      timestamps: opts.timestamps ?? false,
      // The engine parses "seconds.nanoseconds" on every API version.
      ...(opts.since !== undefined ? { since: unixTimestamp(opts.since) } : {}),
      ...(signal ? { abortSignal: signal } : {}),
    };
    let source: AsyncIterable<Buffer | string>;
    let stream: NodeJS.ReadableStream | undefined;
    try {
      // follow=true answers a stream, follow=false the whole log as one Buffer.
      const logs = this.docker.getContainer(ref).logs as (o: typeof query) => Promise<Buffer | NodeJS.ReadableStream>;
      const result = await logs.call(this.docker.getContainer(ref), query);
      if (Buffer.isBuffer(result)) {
        source = Readable.from([result]);
      } else {
        stream = result;
        source = result as AsyncIterable<Buffer | string>;
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw this.translate(err, `read the logs of ${ref}`);
    }
    const decoder = new LogFrameDecoder(opts.timestamps ?? false);
    try {
      for await (const chunk of source) {
        for (const line of decoder.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk)) yield line;
      }
    } catch (err) {
      if (signal?.aborted) return;
      throw this.translate(err, `read the logs of ${ref}`);
    } finally {
      (stream as Readable | undefined)?.destroy?.();
    }
    for (const line of decoder.end()) yield line;
    // A followed log also ends when the connection drops: only the engine can say which it was.
    if (opts.follow && !signal?.aborted) await this.ping({ timeoutMs: 2_000 });
  }

  // --- networks ---------------------------------------------------------------------

  /** Creates a bridge network; returns its id. A name already taken gives DOCKER_CONFLICT. */
  async createNetwork(opts: { name: string; labels: Record<string, string> }): Promise<string> {
    try {
      const network = await this.docker.createNetwork({
        Name: opts.name,
        Driver: 'bridge',
        CheckDuplicate: true,
        Labels: opts.labels,
      });
      return network.id;
    } catch (err) {
      throw this.translate(err, `create network ${opts.name}`);
    }
  }

  async inspectNetwork(ref: string): Promise<NetworkSummary | undefined> {
    try {
      const n = await this.docker.getNetwork(ref).inspect();
      return toNetworkSummary(n as Dockerode.NetworkInspectInfo);
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw this.translate(err, `inspect network ${ref}`);
    }
  }

  /** Networks carrying every given label filter. `containers` is filled in only by inspectNetwork. */
  async listNetworks(labelFilters: string[]): Promise<NetworkSummary[]> {
    try {
      const list = await this.docker.listNetworks(labelFilters.length > 0 ? { filters: { label: labelFilters } } : {});
      return list.map(toNetworkSummary);
    } catch (err) {
      throw this.translate(err, 'list networks');
    }
  }

  /** Removes a network; absent networks are not an error. Attached containers must be disconnected first. */
  async removeNetwork(ref: string): Promise<void> {
    try {
      await this.docker.getNetwork(ref).remove();
    } catch (err) {
      if (httpStatus(err) === 404) return;
      throw this.translate(err, `remove network ${ref}`);
    }
  }

  /** Attaches a container (running or not) to a network; one already attached is left alone. */
  async connectNetwork(network: string, container: string, opts: { aliases?: string[] } = {}): Promise<void> {
    try {
      await this.docker.getNetwork(network).connect({
        Container: container,
        EndpointConfig: { Aliases: opts.aliases ?? [] },
      });
    } catch (err) {
      if (/already exists in network/i.test(errorText(err))) return;
      throw this.translate(err, `connect ${container} to network ${network}`);
    }
  }

  /** Detaches a container from a network; one not attached is left alone. */
  async disconnectNetwork(network: string, container: string, opts: { force?: boolean } = {}): Promise<void> {
    try {
      await this.docker.getNetwork(network).disconnect({ Container: container, Force: opts.force ?? false });
    } catch (err) {
      if (/is not connected to/i.test(errorText(err))) return;
      throw this.translate(err, `disconnect ${container} from network ${network}`);
    }
  }

  // --- volumes ------------------------------------------------------------------------

  /** Creates a named local volume (the engine returns an existing one of that name unchanged). */
  async createVolume(opts: { name: string; labels: Record<string, string> }): Promise<void> {
    try {
      await this.docker.createVolume({ Name: opts.name, Driver: 'local', Labels: opts.labels });
    } catch (err) {
      throw this.translate(err, `create volume ${opts.name}`);
    }
  }

  async inspectVolume(name: string): Promise<VolumeSummary | undefined> {
    try {
      const v = (await this.docker.getVolume(name).inspect()) as Dockerode.VolumeInspectInfo & { CreatedAt?: string };
      return { name: v.Name, labels: v.Labels ?? {}, created: v.CreatedAt ?? null };
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw this.translate(err, `inspect volume ${name}`);
    }
  }

  async listVolumes(labelFilters: string[]): Promise<VolumeSummary[]> {
    try {
      const result = await this.docker.listVolumes(labelFilters.length > 0 ? { filters: { label: labelFilters } } : {});
      return (result.Volumes ?? []).map((v) => {
        const withDate = v as Dockerode.VolumeInspectInfo & { CreatedAt?: string };
        return { name: v.Name, labels: v.Labels ?? {}, created: withDate.CreatedAt ?? null };
      });
    } catch (err) {
      throw this.translate(err, 'list volumes');
    }
  }

  /** Removes a volume; absent volumes are not an error, one in use gives DOCKER_CONFLICT. */
  async removeVolume(name: string): Promise<void> {
    try {
      await this.docker.getVolume(name).remove();
    } catch (err) {
      if (httpStatus(err) === 404) return;
      throw this.translate(err, `remove volume ${name}`);
    }
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
    if (fallback === 'DOCKER_API' && /port is already allocated|address already in use/i.test(detail)) {
      return new DockerEngineError('DOCKER_PORT_BUSY', `cannot ${action}: ${detail}`, 'free the port or choose another one', {
        cause: err,
      });
    }
    if (fallback === 'DOCKER_API' && status === 409) {
      return new DockerEngineError('DOCKER_CONFLICT', `cannot ${action}: ${detail}`, 'check the object\'s state with docker inspect', {
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

/** Nanoseconds since the epoch of an RFC 3339 time with up to 9 fraction digits. */
export function rfc3339Nanos(time: string): bigint {
  const m = /^(.*T\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(time);
  if (!m) throw new Error(`not an RFC 3339 time: ${time}`);
  const seconds = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(seconds)) throw new Error(`not an RFC 3339 time: ${time}`);
  return BigInt(seconds) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

function unixTimestamp(time: string): string {
  const ns = rfc3339Nanos(time);
  return `${ns / 1_000_000_000n}.${(ns % 1_000_000_000n).toString().padStart(9, '0')}`;
}

/** The engine's "zero time" (never started / never finished) as null. */
function engineTime(value: string | undefined): string | null {
  if (!value || value.startsWith('0001-01-01')) return null;
  return value;
}

function errorText(err: unknown): string {
  const e = (err ?? {}) as DockerodeHttpError;
  return `${e.json?.message ?? ''} ${e.message ?? ''} ${e.reason ?? ''}`;
}

function toNetworkSummary(n: Dockerode.NetworkInspectInfo): NetworkSummary {
  return {
    id: n.Id,
    name: n.Name,
    labels: n.Labels ?? {},
    created: n.Created,
    containers: Object.keys(n.Containers ?? {}),
  };
}

/**
 * Docker's multiplexed log stream (no TTY): frames of an 8-byte header
 * (stream type, 3 zero bytes, big-endian length) and a payload; lines may span
 * frames. A stream that does not start like a frame is taken as raw stdout
 * (a container made with a TTY).
 */
export class LogFrameDecoder {
  private pending: Buffer = Buffer.alloc(0);
  private raw: boolean | undefined;
  private readonly partial: Record<'stdout' | 'stderr', string> = { stdout: '', stderr: '' };

  /** `timestamps`: each line starts with the engine's time and a space (logs?timestamps=1). */
  constructor(private readonly timestamps = false) {}

  push(chunk: Buffer): ContainerLogLine[] {
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    const out: ContainerLogLine[] = [];
    if (this.raw === undefined && this.pending.length > 0) {
      const first = this.pending[0] ?? 0;
      this.raw = first > 2 || (this.pending.length >= 4 && this.pending.readUIntBE(1, 3) !== 0);
    }
    if (this.raw) {
      this.take('stdout', this.pending.toString('utf8'), out);
      this.pending = Buffer.alloc(0);
      return out;
    }
    while (this.pending.length >= 8) {
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < 8 + size) break;
      const stream = this.pending[0] === 2 ? 'stderr' : 'stdout';
      this.take(stream, this.pending.subarray(8, 8 + size).toString('utf8'), out);
      this.pending = this.pending.subarray(8 + size);
    }
    return out;
  }

  /** The last lines that had no newline yet. */
  end(): ContainerLogLine[] {
    const out: ContainerLogLine[] = [];
    for (const stream of ['stdout', 'stderr'] as const) {
      if (this.partial[stream] !== '') out.push(this.entry(stream, this.partial[stream]));
      this.partial[stream] = '';
    }
    return out;
  }

  private take(stream: 'stdout' | 'stderr', text: string, out: ContainerLogLine[]): void {
    const parts = (this.partial[stream] + text).split('\n');
    this.partial[stream] = parts.pop() ?? '';
    for (const line of parts) out.push(this.entry(stream, line));
  }

  private entry(stream: 'stdout' | 'stderr', raw: string): ContainerLogLine {
    const text = raw.replace(/\r$/, '');
    if (!this.timestamps) return { stream, line: text };
    const space = text.indexOf(' ');
    if (space < 0) return { stream, line: '', time: text };
    return { stream, line: text.slice(space + 1), time: text.slice(0, space) };
  }
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
