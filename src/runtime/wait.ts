// Waiting is an object: a condition with a description and an explicit
// timeout, and a timeout message that says what was awaited and for how long.
// No bare sleeps elsewhere.
import { DvoteError } from '../core/errors.js';

export interface WaitResult<T> {
  value: T;
  ms: number;
}

export interface WaitOptions {
  timeoutMs: number;
  intervalMs?: number;
  signal?: AbortSignal;
  /** Called with the latest reason the condition is not met yet (for spinners). */
  onPending?: (reason: string) => void;
}

/**
 * Poll `check` until it returns { done: true, value }. `check` returns
 * { done: false, reason } while waiting; the last reason ends up in the
 * timeout message.
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<{ done: true; value: T } | { done: false; reason: string }>,
  opts: WaitOptions,
): Promise<WaitResult<T>> {
  const start = performance.now();
  const interval = opts.intervalMs ?? 100;
  let last = 'not checked yet';
  for (;;) {
    if (opts.signal?.aborted) throw new DvoteError('TIMEOUT', `interrupted while waiting for ${what}`);
    let r: { done: true; value: T } | { done: false; reason: string };
    try {
      r = await check();
    } catch (e) {
      r = { done: false, reason: (e as Error).message };
    }
    if (r.done) return { value: r.value, ms: performance.now() - start };
    if (r.reason !== last) {
      last = r.reason;
      opts.onPending?.(last);
    }
    const elapsed = performance.now() - start;
    if (elapsed >= opts.timeoutMs) {
      throw new DvoteError(
        'TIMEOUT',
        `timed out after ${(opts.timeoutMs / 1000).toFixed(1)} s waiting for ${what} (last seen: ${last})`,
        'see `dvote status` and `dvote logs <node>`; raise --timeout if the machine is slow',
      );
    }
    await sleep(Math.min(interval, opts.timeoutMs - elapsed), opts.signal);
  }
}

export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const onAbort = () => {
      clearTimeout(t);
      resolve();
    };
    const t = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Parse "120s", "2m", "500ms", "1.5s" or a plain number of seconds. */
export function parseDuration(text: string): number | null {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (!m) return null;
  const n = Number(m[1]);
  switch (m[2]) {
    case 'ms':
      return n;
    case 'm':
      return n * 60_000;
    case 'h':
      return n * 3_600_000;
    default:
      return n * 1000;
  }
}
