// The Docker runtime: every node is one container of the dvote node image on
// its cluster's own bridge network, with a named volume at /data. All cluster
// state is read back from the engine (labels, restart policy, network
// attachments); nothing is kept in a file. Talks to the engine only through
// DockerEngine (docker.ts), the one dockerode adapter.
//
// Decisions:
// - Restart policy `on-failure` (no retry limit). A node that crashes (exit
//   code != 0: uncaught error, SIGKILL inside the container, OOM) comes back by
//   itself with Docker's backoff (100 ms, doubling, reset after 10 s of
//   uptime). The node program exits 0 only when asked to stop (SIGTERM), and
//   that is not undone. `unless-stopped` would restart clean exits too.
// - An injected kill or stop is remembered in the restart policy itself: it is
//   switched to the "killed" policy before the signal is sent. `docker kill`
//   alone already cancels the pending restart (ExitOnNext), but the engine's
//   restart manager ignores the "manually stopped" flag for `on-failure`, so
//   after a daemon restart a killed container (exit 137) would come back.
//   With the policy changed, a kill survives a daemon restart, and the state
//   reads 'killed' (policy differs from the one the container was created
//   with, kept in a label) rather than 'exited'. start()/revive() put the
//   normal policy back. Nodes with restartOnCrash false run with policy `no`
//   and are marked with `unless-stopped`, which the engine never applies to a
//   container stopped by `docker kill`/`docker stop`.
// - busyPorts: a host port is busy when a running container publishes it or
//   binding 127.0.0.1:<port> fails, except when the container holding it
//   belongs to the cluster named in `opts.cluster`: `up` run twice converges
//   onto its own ports. Which of the cluster's nodes holds a port is the
//   planner's business (ObservedNode.ports); a clash left over surfaces at
//   start() as PORT_BUSY.
// - pgAddress is the published 127.0.0.1 port, like `endpoint`: it works on
//   every Docker setup; the container IP is in directEndpoint for tools that
//   want to bypass docker-proxy.
import { createHash } from 'node:crypto';
import { createServer } from 'node:net';
import { DvoteError } from '../core/errors.js';
import { networkName, resourceName, validateClusterName, volumeName } from '../core/naming.js';
import type { NodeRole } from '../core/naming.js';
import { DockerEngine, DockerEngineError, rfc3339Nanos } from './docker.js';
import type { ContainerDetails, ContainerCreateSpec, RestartPolicyName } from './docker.js';
import { ensureImage, ImageBuildError } from './images.js';
import { LABEL, clusterFilter, standardLabels } from './labels.js';
import { projectRoot } from './project-root.js';
import { CONTAINER_PORTS } from './runtime.js';
import type {
  Addressing,
  KillOptions,
  LogOptions,
  NodeSpec,
  NodeState,
  ObservedNode,
  RemoveClusterResult,
  Runtime,
  RuntimeInfo,
  ServiceKind,
} from './runtime.js';
import { waitFor } from './wait.js';

/**
 * The restart policy a container was created with. Docker cannot change a
 * label after creation, but it can change the policy, so the policy now vs
 * this label tells an injected kill from a crash. (Candidate for labels.ts.)
 */
export const RESTART_POLICY_LABEL = 'io.dvote.restart-policy';

const DATA_DIR = '/data';
const PUBLISH_HOST = '127.0.0.1';
/** Services published on the host; raft stays on the cluster network. */
const PUBLISHED_SERVICES: readonly ServiceKind[] = ['http', 'pg'];
const DEFAULT_STOP_TIMEOUT_MS = 10_000;
const NODE_NAME = /^[a-z0-9][a-z0-9-]{0,62}$/;
/** How long a followed log waits for a crashed node to be restarted (the engine's backoff tops out at 1 min). */
const LOG_RESTART_WAIT_MS = 90_000;
const LOG_REOPEN_AFTER_MS = 2_000;

export interface DockerRuntimeOptions {
  /** Default: DockerEngine.connect() (DOCKER_HOST, else /var/run/docker.sock). */
  engine?: DockerEngine;
  /** Run this image instead of building one with ensureImage (tests, pinned deployments). */
  image?: string;
  /** The dvote package root for image builds; default: projectRoot() (works from src/ and dist/). */
  projectRoot?: string;
  /** How long stop() waits after SIGTERM before SIGKILL, unless told otherwise. */
  stopTimeoutMs?: number;
}

export class DockerRuntime implements Runtime {
  readonly kind = 'docker' as const;
  readonly engine: DockerEngine;
  private imageTag: Promise<string> | undefined;
  /** In-flight network creations per cluster, so parallel start() calls create one network. */
  private readonly networkInFlight = new Map<string, Promise<string>>();
  /** Operations on one node run one at a time (in this process). */
  private readonly nodeQueues = new Map<string, Promise<unknown>>();

  constructor(private readonly options: DockerRuntimeOptions = {}) {
    this.engine = options.engine ?? DockerEngine.connect();
  }

  async check(): Promise<RuntimeInfo> {
    return this.guard(async () => {
      const v = await this.engine.ping();
      return { kind: 'docker', description: `docker ${v.version} (API ${v.apiVersion}) at ${this.engine.endpoint}` };
    });
  }

  addressing(cluster: string): Addressing {
    return {
      internal: (node, service) => `${resourceName(cluster, node)}:${CONTAINER_PORTS[service]}`,
      listen: (_node, service) => ({ host: '0.0.0.0', port: CONTAINER_PORTS[service] }),
      dataDir: () => DATA_DIR,
    };
  }

  async prepareCluster(
    cluster: string,
    opts: { onProgress?: (msg: string) => void; signal?: AbortSignal } = {},
  ): Promise<void> {
    assertClusterName(cluster);
    await this.guard(async () => {
      opts.onProgress?.(`network ${networkName(cluster)}`);
      await this.ensureNetwork(cluster);
      await this.image(opts);
    });
  }

  async listNodes(cluster?: string): Promise<ObservedNode[]> {
    return this.guard(async () => {
      const list = await this.engine.listContainers([...clusterFilter(cluster), LABEL.node], { all: true });
      // A container removed between the list and the inspect is simply gone.
      const details = await Promise.all(list.map((c) => this.engine.inspectContainer(c.id)));
      return details
        .filter((c): c is ContainerDetails => c !== undefined)
        .map(observe)
        .sort((a, b) => a.cluster.localeCompare(b.cluster) || a.name.localeCompare(b.name, 'en', { numeric: true }));
    });
  }

  async listClusters(): Promise<string[]> {
    return this.guard(async () => {
      const managed = clusterFilter();
      // Networks and volumes count too: a cluster whose `up` crashed early still needs a `down`.
      const [containers, networks, volumes] = await Promise.all([
        this.engine.listContainers(managed, { all: true }),
        this.engine.listNetworks(managed),
        this.engine.listVolumes(managed),
      ]);
      const names = new Set<string>();
      for (const r of [...containers, ...networks, ...volumes]) {
        const c = r.labels[LABEL.cluster];
        if (c) names.add(c);
      }
      return [...names].sort();
    });
  }

  async start(spec: NodeSpec): Promise<ObservedNode> {
    validateSpec(spec);
    return this.guard(() =>
      this.serial(spec.cluster, spec.name, async () => {
        const image = await this.image({});
        const networkId = await this.ensureNetwork(spec.cluster);
        const create = containerSpec(spec, image, networkId);
        const existing = await this.engine.inspectContainer(create.name);
        if (existing) {
          assertOwned(existing, spec.cluster, spec.name);
          if (existing.labels[LABEL.configHash] === create.labels[LABEL.configHash]) {
            await this.converge(existing, networkId);
            return this.observeNode(spec.cluster, spec.name);
          }
          // Another spec: replace the container, keep the volume (the data).
          await this.engine.removeContainer(existing.id, { force: true });
        }
        await this.createAndStart(spec, create);
        return this.observeNode(spec.cluster, spec.name);
      }),
    );
  }

  async staleNodes(cluster: string): Promise<string[]> {
    return this.guard(async () => {
      const containers = await this.engine.listContainers(clusterFilter(cluster), { all: true });
      if (containers.length === 0) return [];
      const image = await this.image({});
      return containers
        .filter((c) => c.labels[LABEL.image] !== image && c.labels[LABEL.node])
        .map((c) => c.labels[LABEL.node]!)
        .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    });
  }

  /**
   * Undoes an injected fault (for `kill --restart-after`) with no spec at
   * hand: the container holds it. A killed or stopped node is started with
   * its restart policy restored, a paused one continued, a disconnected one
   * reconnected; a running node is left alone. (The process runtime has the
   * same method; it is not in the Runtime interface yet.)
   */
  async revive(cluster: string, name: string): Promise<ObservedNode> {
    return this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        await this.converge(c, await this.ensureNetwork(cluster));
        return this.observeNode(cluster, name);
      }),
    );
  }

  async stop(cluster: string, name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const timeoutMs = opts.timeoutMs ?? this.options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        // Stopped on purpose, like a kill: mark it first so nothing restarts it.
        await this.engine.updateRestartPolicy(c.id, killedPolicy(c));
        await this.engine.stopContainer(c.id, { timeoutSeconds: Math.max(0, Math.ceil(timeoutMs / 1000)) });
      }),
    );
  }

  async kill(cluster: string, name: string, opts: KillOptions = {}): Promise<void> {
    const signal = opts.signal === 'TERM' ? 'SIGTERM' : 'SIGKILL';
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        await this.engine.updateRestartPolicy(c.id, killedPolicy(c));
        if (!c.running) return; // already down (crashed or killed): now marked as killed
        try {
          await this.engine.killContainer(c.id, signal);
        } catch (err) {
          // It stopped between the inspect and the kill: the mark is what matters.
          if (!(err instanceof DockerEngineError && err.code === 'DOCKER_CONFLICT')) throw err;
        }
        if (signal === 'SIGTERM') {
          const timeoutMs = this.options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
          await waitFor(
            `${name} to exit after SIGTERM`,
            async () => {
              const now = await this.engine.inspectContainer(c.id);
              return !now || !now.running ? { done: true, value: null } : { done: false, reason: `state ${now.status}` };
            },
            { timeoutMs, intervalMs: 100 },
          ).catch((err: unknown) => {
            throw err instanceof DvoteError && err.code === 'TIMEOUT'
              ? new DvoteError('TIMEOUT', `${name} did not exit within ${timeoutMs / 1000} s of SIGTERM`, 'kill it with --signal KILL')
              : err;
          });
        }
      }),
    );
  }

  async pause(cluster: string, name: string): Promise<void> {
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        if (c.paused) return;
        if (!c.running || c.restarting) throw notRunning(name, 'pause', observe(c).state);
        await this.engine.pauseContainer(c.id);
      }),
    );
  }

  async unpause(cluster: string, name: string): Promise<void> {
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        if (c.paused) await this.engine.unpauseContainer(c.id);
      }),
    );
  }

  async disconnect(cluster: string, name: string): Promise<void> {
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        const attached = c.networks[networkName(cluster)];
        if (!attached) return;
        await this.engine.disconnectNetwork(attached.networkId, c.id, { force: true });
      }),
    );
  }

  async reconnect(cluster: string, name: string): Promise<void> {
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.container(cluster, name);
        if (c.networks[networkName(cluster)]) return;
        const networkId = await this.ensureNetwork(cluster);
        await this.engine.connectNetwork(networkId, c.id, { aliases: [name] });
      }),
    );
  }

  async remove(cluster: string, name: string, opts: { volumes?: boolean } = {}): Promise<void> {
    await this.guard(() =>
      this.serial(cluster, name, async () => {
        const c = await this.engine.inspectContainer(resourceName(cluster, name));
        if (c) {
          assertOwned(c, cluster, name);
          await this.engine.removeContainer(c.id, { force: true });
        }
        if (opts.volumes) {
          const v = await this.engine.inspectVolume(volumeName(cluster, name));
          if (v && v.labels[LABEL.cluster] === cluster) await this.engine.removeVolume(v.name);
        }
      }),
    );
  }

  async removeCluster(cluster: string, opts: { volumes?: boolean } = {}): Promise<RemoveClusterResult> {
    assertClusterName(cluster);
    return this.guard(async () => {
      const filter = clusterFilter(cluster);
      const result: RemoveClusterResult = { nodes: [], networks: [], volumes: [] };
      const containers = await this.engine.listContainers(filter, { all: true });
      await Promise.all(containers.map((c) => this.engine.removeContainer(c.id, { force: true })));
      result.nodes = containers.map((c) => c.labels[LABEL.node] ?? c.name).sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
      for (const n of await this.engine.listNetworks(filter)) {
        // Anything else still attached (a debugging container, say) would block the removal.
        const attached = (await this.engine.inspectNetwork(n.id))?.containers ?? [];
        for (const id of attached) await this.engine.disconnectNetwork(n.id, id, { force: true });
        await this.engine.removeNetwork(n.id);
        result.networks.push(n.name);
      }
      if (opts.volumes) {
        for (const v of await this.engine.listVolumes(filter)) {
          await this.engine.removeVolume(v.name);
          result.volumes.push(v.name);
        }
      }
      return result;
    });
  }

  /**
   * With `follow`, the engine ends the stream when the container stops; a
   * node that crashed and is being restarted by its policy is followed on
   * into its next run (no line twice), one killed or stopped ends it.
   */
  async *logs(cluster: string, name: string, opts: LogOptions = {}): AsyncIterable<string> {
    try {
      let c = await this.container(cluster, name);
      if (!opts.follow) {
        for await (const entry of this.engine.containerLogs(c.id, opts)) yield entry.line;
        return;
      }
      let lastTime: string | undefined;
      let last: bigint | undefined;
      for (;;) {
        const startedAt = c.startedAt;
        const lines = this.engine.containerLogs(c.id, {
          follow: true,
          timestamps: true,
          ...(lastTime !== undefined ? { since: lastTime } : opts.tail !== undefined ? { tail: opts.tail } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        for await (const entry of lines) {
          const t = entry.time !== undefined ? lineTime(entry.time) : undefined;
          if (t !== undefined) {
            if (last !== undefined && t <= last) continue; // `since` is inclusive
            last = t;
            lastTime = entry.time;
          }
          yield entry.line;
        }
        if (opts.signal?.aborted) return;
        const next = await this.nextRun(c.id, name, startedAt, opts.signal);
        if (!next) return;
        c = next;
      }
    } catch (err) {
      throw this.toDvoteError(err);
    }
  }

  async busyPorts(ports: number[], opts: { cluster?: string } = {}): Promise<number[]> {
    for (const p of ports) assertPort(p, 'port');
    return this.guard(async () => {
      const holders = new Map<number, string>();
      for (const c of await this.engine.listContainers([], { all: false })) {
        for (const p of c.published) holders.set(p.hostPort, c.labels[LABEL.cluster] ?? '');
      }
      const busy: number[] = [];
      for (const port of [...new Set(ports)]) {
        const holder = holders.get(port);
        if (holder !== undefined) {
          if (opts.cluster === undefined || holder !== opts.cluster) busy.push(port);
        } else if (!(await canBind(port))) {
          busy.push(port);
        }
      }
      return busy;
    });
  }

  // --- internals ------------------------------------------------------------------

  /** The image tag to run: the pinned one, or the one ensureImage builds (once per runtime). */
  private image(opts: { onProgress?: (msg: string) => void; signal?: AbortSignal }): Promise<string> {
    if (this.options.image !== undefined) return Promise.resolve(this.options.image);
    if (!this.imageTag) {
      const pending = (async () => {
        const onProgress = opts.onProgress;
        const result = await ensureImage(this.engine, {
          projectRoot: this.options.projectRoot ?? packageRoot(),
          ...(onProgress ? { onProgress: (p) => onProgress(`image ${p.phase}: ${p.message}`) } : {}),
          ...(opts.signal ? { signal: opts.signal } : {}),
        });
        return result.tag;
      })();
      this.imageTag = pending;
      pending.catch(() => {
        if (this.imageTag === pending) this.imageTag = undefined;
      });
    }
    return this.imageTag;
  }

  /** The id of the cluster's network, created when missing. */
  private ensureNetwork(cluster: string): Promise<string> {
    const inFlight = this.networkInFlight.get(cluster);
    if (inFlight) return inFlight;
    const pending = (async () => {
      const name = networkName(cluster);
      // The engine's name filter matches substrings; compare exactly. With
      // duplicates (two `up`s racing), the oldest wins, `down` removes all.
      const own = (await this.engine.listNetworks(clusterFilter(cluster)))
        .filter((n) => n.name === name)
        .sort((a, b) => a.created.localeCompare(b.created));
      if (own[0]) return own[0].id;
      try {
        return await this.engine.createNetwork({
          name,
          labels: { [LABEL.managed]: 'true', [LABEL.cluster]: cluster },
        });
      } catch (err) {
        if (!(err instanceof DockerEngineError && err.code === 'DOCKER_CONFLICT')) throw err;
        const taken = await this.engine.inspectNetwork(name);
        if (taken && taken.labels[LABEL.cluster] === cluster) return taken.id;
        throw new DvoteError(
          'INVALID_INPUT',
          `a Docker network named ${name} exists and was not made by dvote for cluster "${cluster}"`,
          `remove it (docker network rm ${name}) or choose another cluster name`,
        );
      }
    })();
    this.networkInFlight.set(cluster, pending);
    const clear = () => this.networkInFlight.delete(cluster);
    pending.then(clear, clear);
    return pending;
  }

  /** Brings an existing container to "running, attached, restartable", as its labels describe it. */
  private async converge(c: ContainerDetails, networkId: string): Promise<void> {
    const cluster = c.labels[LABEL.cluster] ?? '';
    const name = c.labels[LABEL.node] ?? c.name;
    const normal = createdPolicy(c);
    const previous = c.restartPolicy.name;
    if (previous !== normal) await this.engine.updateRestartPolicy(c.id, normal);
    try {
      if (!c.networks[networkName(cluster)]) {
        await this.engine.connectNetwork(networkId, c.id, { aliases: [name] });
      }
      if (c.paused) await this.engine.unpauseContainer(c.id);
      else if (!c.running) await this.engine.startContainer(c.id);
    } catch (err) {
      // Not started after all: keep it marked as it was (killed stays killed).
      if (previous !== normal) await this.engine.updateRestartPolicy(c.id, previous).catch(() => {});
      throw portBusyError(err, cluster, name, parsePorts(c.labels[LABEL.ports])) ?? err;
    }
  }

  /** Creates the volume (if missing) and the container, and starts it; undoes what it created on failure. */
  private async createAndStart(spec: NodeSpec, create: ContainerCreateSpec): Promise<void> {
    const volume = volumeName(spec.cluster, spec.name);
    const existingVolume = await this.engine.inspectVolume(volume);
    if (existingVolume && existingVolume.labels[LABEL.cluster] !== spec.cluster) {
      throw new DvoteError(
        'INVALID_INPUT',
        `a Docker volume named ${volume} exists and was not made by dvote for cluster "${spec.cluster}"`,
        `remove it (docker volume rm ${volume}) or choose another cluster name`,
      );
    }
    let createdVolume = false;
    let containerId: string | undefined;
    try {
      if (!existingVolume) {
        await this.engine.createVolume({ name: volume, labels: standardLabels(spec.cluster, spec.name, spec.role) });
        createdVolume = true;
      }
      containerId = await this.engine.createContainer(create);
      await this.engine.startContainer(containerId);
    } catch (err) {
      // Best effort: the engine may be the thing that failed; the caller needs the first error.
      if (containerId !== undefined) await this.engine.removeContainer(containerId, { force: true }).catch(() => {});
      if (createdVolume) await this.engine.removeVolume(volume).catch(() => {});
      if (err instanceof DockerEngineError && err.code === 'DOCKER_NOT_FOUND' && /image/i.test(err.message)) {
        this.imageTag = undefined; // removed behind our back: build it again next time
      }
      throw portBusyError(err, spec.cluster, spec.name, spec.ports) ?? err;
    }
  }

  /**
   * After a followed log ended: the container's next run when the restart
   * policy brings it back, undefined when it stays down (killed, stopped,
   * exited cleanly, removed) or the caller gave up.
   */
  private async nextRun(id: string, name: string, startedAt: string | null, signal?: AbortSignal): Promise<ContainerDetails | undefined> {
    const endedAt = performance.now();
    let failure: unknown;
    const found = await waitFor<ContainerDetails | null>(
      `${name} to run again`,
      async () => {
        let c: ContainerDetails | undefined;
        try {
          c = await this.engine.inspectContainer(id);
        } catch (err) {
          failure = err; // the engine went away: say so now, not at the timeout
          return { done: true, value: null };
        }
        if (!c) return { done: true, value: null };
        if (c.restarting) return { done: false, reason: 'restarting' };
        if (!c.running) return { done: true, value: null };
        if (c.startedAt !== startedAt) return { done: true, value: c };
        // Still the same run: the engine has not processed the exit yet, or
        // the stream ended for another reason; follow it again after a while.
        return performance.now() - endedAt > LOG_REOPEN_AFTER_MS ? { done: true, value: c } : { done: false, reason: 'same run' };
      },
      { timeoutMs: LOG_RESTART_WAIT_MS, intervalMs: 200, ...(signal ? { signal } : {}) },
    ).then(
      (r) => r.value,
      () => null, // gave up waiting, or the caller aborted
    );
    if (failure !== undefined) throw failure;
    return found ?? undefined;
  }

  private async observeNode(cluster: string, name: string): Promise<ObservedNode> {
    return observe(await this.container(cluster, name));
  }

  /** The node's container, or NOT_FOUND. */
  private async container(cluster: string, name: string): Promise<ContainerDetails> {
    const c = await this.engine.inspectContainer(resourceName(cluster, name));
    if (!c || c.labels[LABEL.cluster] !== cluster || c.labels[LABEL.node] !== name) {
      throw new DvoteError('NOT_FOUND', `no node "${name}" in cluster "${cluster}"`, 'see `dvote status` for the node names');
    }
    return c;
  }

  private serial<T>(cluster: string, name: string, run: () => Promise<T>): Promise<T> {
    const key = `${cluster}/${name}`;
    const previous = this.nodeQueues.get(key) ?? Promise.resolve();
    const next = previous.then(run, run);
    const settled = next.then(
      () => undefined,
      () => undefined,
    );
    this.nodeQueues.set(key, settled);
    void settled.then(() => {
      if (this.nodeQueues.get(key) === settled) this.nodeQueues.delete(key);
    });
    return next;
  }

  private async guard<T>(run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } catch (err) {
      throw this.toDvoteError(err);
    }
  }

  /** Every engine failure becomes a DvoteError; a vanished daemon is RUNTIME_UNAVAILABLE (exit 3). */
  private toDvoteError(err: unknown): unknown {
    if (err instanceof DvoteError) return err;
    if (err instanceof DockerEngineError) {
      if (err.code === 'DOCKER_UNAVAILABLE') {
        const reason = /\(([^)]*)\)/.exec(err.message)?.[1];
        return new DvoteError('RUNTIME_UNAVAILABLE', `cannot reach Docker at ${this.engine.endpoint}`, err.hint, reason ? [reason] : []);
      }
      const problem = withoutHint(err.message, err.hint);
      if (err.code === 'DOCKER_NOT_FOUND') return new DvoteError('NOT_FOUND', problem, err.hint);
      if (err.code === 'DOCKER_PORT_BUSY') return new DvoteError('PORT_BUSY', problem, err.hint);
      return new DvoteError('INTERNAL', problem, err.hint);
    }
    if (err instanceof ImageBuildError) {
      const problem = withoutHint(err.message, err.hint);
      switch (err.code) {
        case 'DOCKER_UNAVAILABLE':
          return new DvoteError('RUNTIME_UNAVAILABLE', `cannot reach Docker at ${this.engine.endpoint}`, err.hint, [problem]);
        case 'MMDEBSTRAP_MISSING':
        case 'BASE_IMAGE_MISSING':
          return new DvoteError('RUNTIME_UNAVAILABLE', problem, err.hint);
        case 'ABORTED':
          return new DvoteError('TIMEOUT', problem, err.hint);
        default:
          return new DvoteError('INTERNAL', problem, err.hint);
      }
    }
    return err;
  }
}

// --- pure helpers -------------------------------------------------------------------

/** Hash of everything that, changed, needs a new container: config, env, image, ports, labels, policy. */
export function configHash(spec: NodeSpec, image: string): string {
  const material = canonicalJson({
    role: spec.role,
    config: spec.config,
    env: spec.env ?? {},
    image,
    ports: spec.ports,
    labels: spec.labels ?? {},
    restartOnCrash: spec.restartOnCrash ?? true,
  });
  return createHash('sha256').update(material).digest('hex').slice(0, 16);
}

/** What a container's state reads as, for dvote. */
export function nodeState(c: Pick<ContainerDetails, 'status' | 'running' | 'paused' | 'restarting' | 'restartPolicy' | 'labels'>): NodeState {
  if (c.paused) return 'paused';
  if (c.restarting || c.status === 'created') return 'starting';
  if (c.running) return 'running';
  return c.restartPolicy.name !== createdPolicy(c) ? 'killed' : 'exited';
}

function containerSpec(spec: NodeSpec, image: string, networkId: string): ContainerCreateSpec {
  const env = Object.entries(spec.env ?? {})
    .filter(([k]) => k !== 'DVOTE_CONFIG')
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([k, v]) => `${k}=${v}`);
  env.push(`DVOTE_CONFIG=${JSON.stringify(spec.config)}`);
  return {
    name: resourceName(spec.cluster, spec.name),
    image,
    hostname: spec.name,
    env,
    labels: {
      ...standardLabels(spec.cluster, spec.name, spec.role, spec.labels ?? {}),
      [LABEL.configHash]: configHash(spec, image),
      [LABEL.ports]: JSON.stringify(sortedPorts(spec.ports)),
      [LABEL.image]: image,
      [RESTART_POLICY_LABEL]: normalPolicy(spec),
    },
    publish: PUBLISHED_SERVICES.flatMap((service) => {
      const hostPort = spec.ports[service];
      return hostPort === undefined ? [] : [{ containerPort: CONTAINER_PORTS[service], hostPort, hostIp: PUBLISH_HOST }];
    }),
    network: networkId,
    aliases: [spec.name],
    volumes: [{ name: volumeName(spec.cluster, spec.name), target: DATA_DIR }],
    restartPolicy: normalPolicy(spec),
    stopTimeoutSeconds: DEFAULT_STOP_TIMEOUT_MS / 1000,
  };
}

function observe(c: ContainerDetails): ObservedNode {
  const cluster = c.labels[LABEL.cluster] ?? '';
  const name = c.labels[LABEL.node] ?? c.name;
  const role = (c.labels[LABEL.role] ?? 'manager') as NodeRole;
  const ports = parsePorts(c.labels[LABEL.ports]);
  const attachment = c.networks[networkName(cluster)];
  const ip = attachment?.ipAddress ? attachment.ipAddress : undefined;
  const direct = ip ? `http://${ip}:${CONTAINER_PORTS.http}` : undefined;
  const endpoint = ports.http !== undefined ? `http://${PUBLISH_HOST}:${ports.http}` : (direct ?? `http://${resourceName(cluster, name)}:${CONTAINER_PORTS.http}`);
  const state = nodeState(c);
  const node: ObservedNode = {
    cluster,
    name,
    role,
    labels: { ...c.labels },
    state,
    disconnected: attachment === undefined,
    endpoint,
    directEndpoint: direct ?? endpoint,
    ports,
    runtimeId: c.id.slice(0, 12),
    restartCount: c.restartCount,
    // Uptime is what people read it for: only while the process is up.
    startedAt: state === 'running' || state === 'paused' ? c.startedAt : null,
  };
  if (role === 'postgres') {
    if (ports.pg !== undefined) node.pgAddress = `${PUBLISH_HOST}:${ports.pg}`;
    else if (ip) node.pgAddress = `${ip}:${CONTAINER_PORTS.pg}`;
  }
  return node;
}

function normalPolicy(spec: NodeSpec): RestartPolicyName {
  return spec.restartOnCrash === false ? 'no' : 'on-failure';
}

/** The policy the container was created with (and has unless killed on purpose). */
function createdPolicy(c: Pick<ContainerDetails, 'labels'>): RestartPolicyName {
  return (c.labels[RESTART_POLICY_LABEL] ?? 'on-failure') as RestartPolicyName;
}

/** The policy that marks a container as killed on purpose (see the header). */
function killedPolicy(c: ContainerDetails): RestartPolicyName {
  return createdPolicy(c) === 'no' ? 'unless-stopped' : 'no';
}

function parsePorts(text: string | undefined): Partial<Record<ServiceKind, number>> {
  if (!text) return {};
  try {
    const raw = JSON.parse(text) as Record<string, unknown>;
    const ports: Partial<Record<ServiceKind, number>> = {};
    for (const key of ['http', 'raft', 'pg'] as const) {
      const v = raw[key];
      if (typeof v === 'number') ports[key] = v;
    }
    return ports;
  } catch {
    return {};
  }
}

function sortedPorts(ports: NodeSpec['ports']): NodeSpec['ports'] {
  return Object.fromEntries(Object.entries(ports).sort(([a], [b]) => a.localeCompare(b))) as NodeSpec['ports'];
}

function portBusyError(err: unknown, cluster: string, name: string, ports: NodeSpec['ports']): DvoteError | undefined {
  if (!(err instanceof DockerEngineError && err.code === 'DOCKER_PORT_BUSY')) return undefined;
  const published = PUBLISHED_SERVICES.map((s) => ports[s]).filter((p): p is number => p !== undefined);
  const named = published.filter((p) => new RegExp(`:${p}\\b`).test(err.message));
  const which = (named.length > 0 ? named : published).map((p) => `${PUBLISH_HOST}:${p}`).join(', ');
  return new DvoteError(
    'PORT_BUSY',
    `cannot start ${name} of cluster "${cluster}": host port ${which} is already in use`,
    'stop what holds it, or give the cluster other ports',
  );
}

function notRunning(name: string, action: string, state: NodeState): DvoteError {
  return new DvoteError('INVALID_INPUT', `cannot ${action} ${name}: it is not running (state ${state})`, 'start it again with `dvote up`');
}

function assertOwned(c: ContainerDetails, cluster: string, name: string): void {
  if (c.labels[LABEL.cluster] === cluster && c.labels[LABEL.node] === name) return;
  throw new DvoteError(
    'INVALID_INPUT',
    `a Docker container named ${c.name} exists and is not dvote's node "${name}" of cluster "${cluster}"`,
    `remove it (docker rm -f ${c.name}) or choose another cluster name`,
  );
}

function assertClusterName(cluster: string): void {
  const problem = validateClusterName(cluster);
  if (problem) throw new DvoteError('INVALID_INPUT', problem, 'pick another cluster name');
}

function assertPort(port: number, what: string): void {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DvoteError('INVALID_INPUT', `${what} ${port} is not a TCP port (1-65535)`, 'choose a port between 1024 and 65535');
  }
}

function validateSpec(spec: NodeSpec): void {
  assertClusterName(spec.cluster);
  if (!NODE_NAME.test(spec.name)) {
    throw new DvoteError('INVALID_INPUT', `node name "${spec.name}" must use only a-z, 0-9 and "-"`, 'use the names from core/naming.ts');
  }
  for (const [service, port] of Object.entries(spec.ports)) {
    if (port !== undefined) assertPort(port, `${spec.name}'s ${service} port`);
  }
  if (spec.config.id !== spec.name || spec.config.role !== spec.role || spec.config.cluster !== spec.cluster) {
    throw new DvoteError(
      'INVALID_INPUT',
      `node ${spec.name}: its config says id ${spec.config.id}, role ${spec.config.role}, cluster ${spec.config.cluster}`,
      'build the NodeConfig from the same node name, role and cluster as the spec',
    );
  }
}

function packageRoot(): string {
  try {
    return projectRoot();
  } catch (err) {
    throw new DvoteError('INTERNAL', (err as Error).message, 'reinstall dvote');
  }
}

function lineTime(time: string): bigint | undefined {
  try {
    return rfc3339Nanos(time);
  } catch {
    return undefined; // not a time after all: no de-duplication for this line
  }
}

function withoutHint(message: string, hint: string): string {
  return message.endsWith(`: ${hint}`) ? message.slice(0, -(hint.length + 2)) : message;
}

/** True when 127.0.0.1:<port> can be bound now. */
function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen({ host: PUBLISH_HOST, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** JSON with object keys sorted, so equal values hash equally. */
function canonicalJson(value: unknown): string {
  return JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );
}
