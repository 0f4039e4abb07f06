// A nemesis for tests on real manager processes: it SIGKILLs whichever member
// is the leader, restarts it after a while, and does it again, until stopped.
// Every kill and restart is logged with its time, so a failing test can say
// what the cluster went through.
import type { ManagerProcesses } from './manager-processes.js';

export interface NemesisEvent {
  /** performance.now() of the test process. */
  at: number;
  kind: 'kill' | 'restart';
  id: string;
}

export interface LeaderNemesisOptions {
  /** Time between a restart (or the start) and the next kill, drawn uniformly from [min, max] ms. */
  upMs: readonly [min: number, max: number];
  /** How long a killed leader stays down before it is restarted. */
  downMs: number;
  /** Stop after this many kills (default: no limit). */
  maxKills?: number;
  signal?: NodeJS.Signals;
  random?: () => number;
}

export class LeaderNemesis {
  readonly events: NemesisEvent[] = [];
  private running = false;
  private loop: Promise<void> | null = null;
  private wake: (() => void) | null = null;

  constructor(
    private readonly cluster: ManagerProcesses,
    private readonly opts: LeaderNemesisOptions,
  ) {}

  get kills(): number {
    return this.events.filter((e) => e.kind === 'kill').length;
  }

  start(): void {
    if (this.loop) throw new Error('leader nemesis: already started');
    this.running = true;
    this.loop = this.run();
  }

  /**
   * Stops killing and (unless told not to, as when a test tears the cluster
   * down) restarts every member that is down.
   */
  async stop(opts: { restartDown?: boolean } = {}): Promise<void> {
    this.running = false;
    this.wake?.();
    await this.loop;
    if (opts.restartDown === false) return;
    for (const m of this.cluster.members) {
      if (!m.child) this.restart(m.id);
    }
  }

  describe(): string {
    const t0 = this.events[0]?.at ?? 0;
    return this.events.map((e) => `+${Math.round(e.at - t0)}ms ${e.kind} ${e.id}`).join(', ');
  }

  private async run(): Promise<void> {
    const random = this.opts.random ?? Math.random;
    const [min, max] = this.opts.upMs;
    while (this.running && this.kills < (this.opts.maxKills ?? Infinity)) {
      await this.pause(min + random() * (max - min));
      if (!this.running) return;
      const leader = await this.cluster.leader();
      if (!leader || !this.running) continue;
      this.cluster.kill(leader, this.opts.signal ?? 'SIGKILL');
      this.events.push({ at: performance.now(), kind: 'kill', id: leader });
      await this.pause(this.opts.downMs);
      if (!this.running) return; // stop() restarts it, or the cluster is being torn down
      this.restart(leader);
    }
  }

  private restart(id: string): void {
    this.cluster.restart(id);
    this.events.push({ at: performance.now(), kind: 'restart', id });
  }

  /** A sleep that stop() cuts short. */
  private pause(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = done;
    });
  }
}
