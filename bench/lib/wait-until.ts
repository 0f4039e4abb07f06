// Polling with an explicit limit and a message that says what was awaited,
// for how long, and the last reason it was not there yet.
export async function waitUntil<T>(
  what: string,
  timeoutMs: number,
  check: () => Promise<T | null | undefined> | T | null | undefined,
  intervalMs = 20,
): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last = 'not checked yet';
  for (;;) {
    try {
      const v = await check();
      if (v !== null && v !== undefined && v !== false) return v;
      last = 'condition not met';
    } catch (e) {
      last = (e as Error).message;
    }
    if (performance.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`);
    await sleep(intervalMs);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
