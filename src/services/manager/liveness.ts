// The failure detector as the manager leader runs it: heartbeats arrive (via
// any manager; followers forward them), stay in the leader's memory, and only
// alive/dead transitions are committed to /dvote/nodes/<id> through Raft.
import { FailureDetector, DEFAULT_FAILURE_TIMEOUT_MS, DEFAULT_HEARTBEAT_MS, type Liveness } from '../../core/failure-detector.js';
import type { ManagerNode } from './manager-node.js';
import { KEYS } from './manager-state.js';

export interface NodeRecord {
  id: string;
  role: string;
  http: string;
  state: Liveness;
  /** When the state last changed (ISO time). */
  since: string;
  registeredAt: string;
}

export class LivenessService {
  readonly detector: FailureDetector;
  private timer: NodeJS.Timeout | null = null;
  private running = false;
  private generation = 0;
  readonly heartbeatMs: number;

  constructor(private readonly node: ManagerNode) {
    this.detector = new FailureDetector(node.config.failureTimeoutMs ?? DEFAULT_FAILURE_TIMEOUT_MS);
    this.heartbeatMs = node.config.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
  }

  /** Leadership changed: run the detector only while this node leads. */
  onLeaderChange(leader: string | null): void {
    const gen = ++this.generation;
    this.stop();
    if (leader !== this.node.config.id) return;
    // Wait until our state is current (a read barrier needs an entry of our term committed).
    void this.node.group
      .readBarrier(10_000)
      .then(() => {
        if (gen !== this.generation || !this.node.group.isLeader) return;
        const records = this.records();
        this.detector.reset(Date.now(), records);
        this.running = true;
        this.timer = setInterval(() => void this.evaluate(), Math.max(20, Math.floor(this.heartbeatMs / 2)));
        this.timer.unref();
      })
      .catch(() => {
        /* lost leadership meanwhile; the next change restarts us */
      });
  }

  stop(): void {
    this.running = false;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  get active(): boolean {
    return this.running;
  }

  records(): NodeRecord[] {
    return this.node.state.kv.range(KEYS.nodesPrefix).map(([, e]) => JSON.parse(e.value) as NodeRecord);
  }

  heartbeat(beat: { id: string; role: string; http: string; info?: Record<string, unknown> }): void {
    const { isNew } = this.detector.heartbeat(Date.now(), { id: beat.id, role: beat.role, http: beat.http, info: beat.info ?? {} });
    if (isNew) void this.evaluate();
  }

  private evaluating = false;

  private async evaluate(): Promise<void> {
    if (!this.running || this.evaluating) return;
    this.evaluating = true;
    try {
      const now = Date.now();
      for (const t of this.detector.evaluate(now)) {
        const beat = this.detector.view(now).find((b) => b.id === t.id);
        const prev = this.node.state.getJson<NodeRecord>(KEYS.node(t.id));
        const rec: NodeRecord = {
          id: t.id,
          role: beat?.role ?? prev?.role ?? 'unknown',
          http: beat?.http ?? prev?.http ?? '',
          state: t.to,
          since: new Date(now).toISOString(),
          registeredAt: prev?.registeredAt ?? new Date(now).toISOString(),
        };
        await this.node.proposeLocal({ op: 'put', key: KEYS.node(t.id), value: JSON.stringify(rec) });
        this.detector.committedTransition(t.id, t.to);
        this.node.log.info({ node: t.id, state: t.to, silentMs: t.silentMs }, 'node liveness changed');
      }
    } catch (e) {
      this.node.log.warn({ err: String(e) }, 'could not commit a liveness change; will retry');
    } finally {
      this.evaluating = false;
    }
  }
}
