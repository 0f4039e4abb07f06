// How long a cluster cannot take writes after its leader dies: the probe
// kills the leader, then writes to every member every `intervalMs` and stops
// at the first write, sent after the kill, that succeeds. The figure is the
// time from the kill to that success (resolution: the interval).
export interface FailoverProbeOptions {
  /** Names of the members to write to (the killed one may be among them; its writes fail). */
  targets: readonly string[];
  /** One write to one member; resolves true on success. Must bound its own time. */
  write: (target: string, seq: number) => Promise<boolean>;
  intervalMs: number;
  /** Give up after this long. */
  timeoutMs: number;
  /** Requests outstanding per member at most (default 128: with 1 s request deadlines and a 10 ms interval the cap never delays a send, it only bounds a member that hangs). */
  maxInFlightPerTarget?: number;
}

export type FailoverSample = { ok: true; ms: number; target: string; attempts: number } | { ok: false; ms: number; attempts: number };

export async function timeFailover(kill: () => void, opts: FailoverProbeOptions): Promise<FailoverSample> {
  const cap = opts.maxInFlightPerTarget ?? 128;
  const inFlight = new Map(opts.targets.map((t) => [t, 0]));
  let seq = 0;
  let attempts = 0;
  const t0 = performance.now();
  kill();
  return new Promise<FailoverSample>((resolve) => {
    let done = false;
    const finish = (s: FailoverSample): void => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(limit);
      resolve(s);
    };
    const fire = (): void => {
      for (const target of opts.targets) {
        if ((inFlight.get(target) ?? 0) >= cap) continue;
        inFlight.set(target, (inFlight.get(target) ?? 0) + 1);
        attempts++;
        opts
          .write(target, seq++)
          .catch(() => false)
          .then((ok) => {
            inFlight.set(target, (inFlight.get(target) ?? 1) - 1);
            if (ok) finish({ ok: true, ms: performance.now() - t0, target, attempts });
          });
      }
    };
    const timer = setInterval(fire, opts.intervalMs);
    const limit = setTimeout(() => finish({ ok: false, ms: performance.now() - t0, attempts }), opts.timeoutMs);
    fire();
  });
}
