// One process's Raft machinery: a single TCP transport shared by every Raft
// group the process hosts (the managers' one group, or a broker's many
// partition groups), and the directory of peer addresses.
import type { Message, NodeId } from '../core/types.js';
import { TcpTransport, type TransportLogger } from '../transport/tcp-transport.js';
import { RaftGroup, type GroupLogger, type RaftGroupOptions } from './raft-group.js';

export interface RaftHostOptions {
  /** This process's id; it is also its node id in every group it joins. */
  nodeId: NodeId;
  listen: { host: string; port: number };
  /** Known peer raft addresses ("host:port"), e.g. from the cluster configuration. */
  peers?: Record<NodeId, string>;
  logger?: GroupLogger & TransportLogger;
}

export class RaftHost {
  readonly nodeId: NodeId;
  private readonly transport: TcpTransport;
  private readonly groups = new Map<string, RaftGroup<unknown>>();
  private readonly directory = new Map<NodeId, string>();
  private readonly logger?: GroupLogger & TransportLogger;

  constructor(opts: RaftHostOptions) {
    this.nodeId = opts.nodeId;
    this.logger = opts.logger;
    for (const [id, addr] of Object.entries(opts.peers ?? {})) this.directory.set(id, addr);
    this.transport = new TcpTransport({
      nodeId: opts.nodeId,
      listen: opts.listen,
      resolve: (id) => this.resolve(id),
      onMessage: (group, msg) => this.groups.get(group)?.step(msg),
      onUnreachable: (peer) => {
        for (const g of this.groups.values()) g.reportUnreachable(peer);
      },
      ...(opts.logger ? { logger: opts.logger } : {}),
    });
  }

  async start(): Promise<void> {
    await this.transport.start();
  }

  get port(): number {
    return this.transport.port;
  }

  /** Configuration wins; otherwise an address learned from a membership change of any group. */
  resolve(id: NodeId): string | undefined {
    const known = this.directory.get(id);
    if (known) return known;
    for (const g of this.groups.values()) {
      const a = g.address(id);
      if (a) return a;
    }
    return undefined;
  }

  setPeerAddress(id: NodeId, address: string): void {
    this.directory.set(id, address);
  }

  /** Create and start a group hosted here. */
  addGroup<R>(opts: Omit<RaftGroupOptions<R>, 'send' | 'id' | 'logger'>): RaftGroup<R> {
    if (this.groups.has(opts.group)) throw new Error(`raft host: group ${opts.group} already exists`);
    const g = new RaftGroup<R>({
      ...opts,
      id: this.nodeId,
      send: (to: NodeId, group: string, msg: Message) => this.transport.send(to, group, msg),
      ...(this.logger ? { logger: this.logger } : {}),
    });
    this.groups.set(opts.group, g as RaftGroup<unknown>);
    try {
      g.start();
    } catch (e) {
      this.groups.delete(opts.group);
      throw e;
    }
    return g;
  }

  group<R = unknown>(id: string): RaftGroup<R> | undefined {
    return this.groups.get(id) as RaftGroup<R> | undefined;
  }

  allGroups(): RaftGroup<unknown>[] {
    return [...this.groups.values()];
  }

  removeGroup(id: string): void {
    const g = this.groups.get(id);
    if (!g) return;
    g.stop();
    this.groups.delete(id);
  }

  transportStats(): ReturnType<TcpTransport['stats']> {
    return this.transport.stats();
  }

  async stop(): Promise<void> {
    for (const g of this.groups.values()) g.stop();
    this.groups.clear();
    await this.transport.close();
  }
}
