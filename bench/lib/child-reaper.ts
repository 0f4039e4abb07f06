// Every process a benchmark starts is registered here, so that it is killed
// when the benchmark ends in any way: normally, by an exception, or by
// Ctrl-C. A bench must never leave etcd or manager processes behind on a
// shared machine.
import type { ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';

type ChildSource = () => Iterable<ChildProcess | null | undefined>;

interface Registration {
  children: ChildSource;
  /** Removed after the children are killed (their data directories). */
  dirs: readonly string[];
}

const registrations = new Set<Registration>();
let installed = false;

function killAll(): void {
  for (const { children: source } of registrations) {
    for (const child of source()) {
      if (child && child.exitCode === null && child.signalCode === null) {
        try {
          child.kill('SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  }
  for (const { dirs } of registrations) for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}

/**
 * Registers a function that lists the live children of one launcher (it is
 * asked at exit time, so restarted children are covered too) and the
 * directories to remove after them. Returns a function that unregisters it.
 */
export function reapOnExit(source: ChildSource, dirs: readonly string[] = []): () => void {
  if (!installed) {
    installed = true;
    // 'exit' handlers must be synchronous: kill() is.
    process.on('exit', killAll);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.once(signal, () => {
        process.stderr.write(`bench: ${signal}, killing the processes it started\n`);
        killAll();
        process.exit(130);
      });
    }
  }
  const registration: Registration = { children: source, dirs };
  registrations.add(registration);
  return () => registrations.delete(registration);
}
