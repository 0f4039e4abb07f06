// Every non-manager node beats to the managers (any of them; followers
// forward to the leader) so the leader's failure detector knows it is alive.
import { ManagerClient } from '../../client/manager-client.js';
import type { NodeConfig } from './node-config.js';
import type { Logger } from './logger.js';
import { DEFAULT_HEARTBEAT_MS } from '../../core/failure-detector.js';

export class HeartbeatSender {
  private timer: NodeJS.Timeout | null = null;
  private inFlight = false;
  private failures = 0;
  readonly client: ManagerClient;

  constructor(
    private readonly config: NodeConfig,
    private readonly log: Logger,
    private readonly info: () => Record<string, unknown> = () => ({}),
  ) {
    this.client = new ManagerClient({
      endpoints: config.managers.map((m) => m.http),
      timeoutMs: 2_000,
      attemptTimeoutMs: 500,
      connections: 2,
    });
  }

  start(): void {
    const every = this.config.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.timer = setInterval(() => void this.beat(), every);
    this.timer.unref();
    void this.beat();
  }

  private async beat(): Promise<void> {
    if (this.inFlight) return;
    this.inFlight = true;
    try {
      await this.client.request('POST', '/v1/heartbeat', {
        id: this.config.id,
        role: this.config.role,
        http: this.config.advertise.http,
        info: this.info(),
      });
      if (this.failures > 0) this.log.info({ after: this.failures }, 'heartbeats reach the managers again');
      this.failures = 0;
    } catch (e) {
      if (this.failures++ % 20 === 0) this.log.warn({ err: (e as Error).message }, 'heartbeat to the managers failed');
    } finally {
      this.inFlight = false;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await this.client.close();
  }
}
