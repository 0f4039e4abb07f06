// The Runtime: how dvote runs its nodes. Two implementations (docker.ts via
// DockerRuntime, process.ts via ProcessRuntime) and nothing above this
// interface knows which one is in use. A later swarm runtime (services
// instead of single containers) fits the same shape.
//
// Every node runs the same program, the dvote node program
// (dist/services/node-main.js), with a role and a JSON configuration; the
// runtime only decides where it runs, how it is addressed and how it is
// broken on purpose.
import type { NodeRole } from '../core/naming.js';
import type { NodeConfig } from '../services/common/node-config.js';

export type RuntimeKind = 'docker' | 'process';

/** The services a node exposes. */
export type ServiceKind = 'http' | 'raft' | 'pg';

/** Port each service listens on inside a container (docker); the process runtime uses host ports. */
export const CONTAINER_PORTS: Record<ServiceKind, number> = { http: 8080, raft: 7000, pg: 5432 };

/** How a node, inside the cluster, reaches another node's service, and where it listens. */
export interface Addressing {
  /** Address other nodes use to reach `node`'s service ("host:port"). */
  internal(node: string, service: ServiceKind, hostPort: number): string;
  /** Where `node` binds the service. */
  listen(node: string, service: ServiceKind, hostPort: number): { host: string; port: number };
  /** Directory for the node's data, as the node sees it. */
  dataDir(node: string): string;
}

/** What to run: a spec is not a running node (you cannot stop a spec). */
export interface NodeSpec {
  cluster: string;
  /** Node name, e.g. "manager-2" (see core/naming.ts). */
  name: string;
  role: NodeRole;
  /** Extra labels (io.dvote.shard, ...); the runtime adds the standard ones. */
  labels?: Record<string, string>;
  /** The node program's configuration (becomes DVOTE_CONFIG). */
  config: NodeConfig;
  /**
   * Host ports: the process runtime listens on them; docker publishes the
   * http (and pg) ones on 127.0.0.1 and uses fixed ports inside.
   */
  ports: Partial<Record<ServiceKind, number>>;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /** Restart the node when it crashes (not when dvote kills it on purpose). Default true. */
  restartOnCrash?: boolean;
}

export type NodeState =
  /** Running normally. */
  | 'running'
  /** SIGSTOPped / docker-paused on purpose. */
  | 'paused'
  /** Killed on purpose by `dvote kill`: automatic restart will not undo it. */
  | 'killed'
  /** Exited by itself (crashed) and not (yet) restarted. */
  | 'exited'
  /** Being (re)started. */
  | 'starting';

/** A node the runtime knows about, as observed now. */
export interface ObservedNode {
  cluster: string;
  name: string;
  role: NodeRole;
  labels: Record<string, string>;
  state: NodeState;
  /** Cut off the cluster network on purpose (docker only). */
  disconnected: boolean;
  /** HTTP base URL reachable from the host running dvote (published port). */
  endpoint: string;
  /**
   * A faster address for load generators, when the runtime has one (docker:
   * the container IP, bypassing the port proxy); otherwise equal to endpoint.
   */
  directEndpoint: string;
  /** PostgreSQL address from the host ("host:port"), for postgres nodes. */
  pgAddress?: string;
  ports: Partial<Record<ServiceKind, number>>;
  /** Container id or process id, for display. */
  runtimeId: string;
  restartCount: number;
  startedAt: string | null;
  /** When a kill asked for it: when the node is due to come back. */
  restartAt?: string;
}

export interface LogOptions {
  follow?: boolean;
  /** Last n lines (default: all). */
  tail?: number;
  signal?: AbortSignal;
}

export interface KillOptions {
  signal?: 'KILL' | 'TERM';
}

export interface RemoveClusterResult {
  nodes: string[];
  networks: string[];
  volumes: string[];
}

export interface RuntimeInfo {
  kind: RuntimeKind;
  /** One line for humans, e.g. "docker 20.10.24 (API 1.41)". */
  description: string;
}

export interface Runtime {
  readonly kind: RuntimeKind;
  /** Check the runtime can work at all; throws DvoteError RUNTIME_UNAVAILABLE with the fix. */
  check(): Promise<RuntimeInfo>;
  addressing(cluster: string): Addressing;
  /**
   * Everything a cluster needs before nodes start: the docker network and the
   * image (built on demand), or the state folder. Idempotent.
   */
  prepareCluster(cluster: string, opts?: { onProgress?: (msg: string) => void; signal?: AbortSignal }): Promise<void>;
  /** Every node of the cluster (or of every cluster), from the runtime's own state (labels / state folder). */
  listNodes(cluster?: string): Promise<ObservedNode[]>;
  listClusters(): Promise<string[]>;
  /**
   * Create the node if missing and start it if not running (converge). A node
   * killed on purpose is started again: `up` and `--restart-after` use this.
   * A node whose spec changed (another config) is recreated, keeping its data.
   */
  start(spec: NodeSpec): Promise<ObservedNode>;
  /**
   * The cluster's nodes made by another build of dvote (Docker: another
   * image; process: another node program). `up` does not restart a running
   * node on its own, so it names them.
   */
  staleNodes(cluster: string): Promise<string[]>;
  /** Graceful stop (SIGTERM, then SIGKILL after timeoutMs). */
  stop(cluster: string, name: string, opts?: { timeoutMs?: number }): Promise<void>;
  /** An injected kill: remembered, so crash-restart does not undo it. */
  kill(cluster: string, name: string, opts?: KillOptions): Promise<void>;
  pause(cluster: string, name: string): Promise<void>;
  unpause(cluster: string, name: string): Promise<void>;
  /**
   * Undo any injected fault with the node's existing spec: start a killed
   * node (restoring crash-restart), unpause, reconnect. Used by
   * `kill --restart-after` and the bench's fault schedule.
   */
  revive(cluster: string, name: string): Promise<ObservedNode>;
  /** Cut a node off the cluster network / reconnect it. Throws RUNTIME_UNSUPPORTED where impossible. */
  disconnect(cluster: string, name: string): Promise<void>;
  reconnect(cluster: string, name: string): Promise<void>;
  /** Remove one node (and its data when `volumes`). */
  remove(cluster: string, name: string, opts?: { volumes?: boolean }): Promise<void>;
  /** Remove everything carrying the cluster's label; leaked networks and volumes included. */
  removeCluster(cluster: string, opts?: { volumes?: boolean }): Promise<RemoveClusterResult>;
  /** The node's output, line by line. */
  logs(cluster: string, name: string, opts?: LogOptions): AsyncIterable<string>;
  /**
   * Of the given host ports, those already in use by something else. Ports
   * held by the named cluster's own nodes are not busy (so `up` can run twice).
   */
  busyPorts(ports: number[], opts?: { cluster?: string }): Promise<number[]>;
}
