// CPU time and wake-ups of a process tree, read from /proc (Linux): what a
// cluster costs the machine, idle or under load, whatever its runtime
// process layout (supervisors, node programs, PostgreSQL and its backends).
import { readdirSync, readFileSync } from 'node:fs';

interface Proc {
  pid: number;
  ppid: number;
  /** utime + stime, clock ticks. */
  ticks: number;
  cmd: string;
}

const TICKS_PER_SEC = 100;

function readProcs(): Proc[] {
  const out: Proc[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmd = readFileSync(`/proc/${name}/cmdline`, 'utf8').replace(/\0/g, ' ');
      out.push({ pid: Number(name), ppid: Number(rest[1]), ticks: Number(rest[11]) + Number(rest[12]), cmd });
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function voluntarySwitches(pid: number): number {
  let n = 0;
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      const s = readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
      n += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)?.[1] ?? 0);
    }
  } catch {
    // gone meanwhile
  }
  return n;
}

export interface TreeSample {
  /** CPU seconds of every process in the trees so far. */
  cpuSeconds: number;
  /** Voluntary context switches (wake-ups after sleeping) so far, all threads. */
  wakeups: number;
  processes: number;
}

/** Sum over every process whose command line matches `root`, and all their descendants. */
export function sampleTree(root: RegExp): TreeSample {
  const procs = readProcs();
  const children = new Map<number, Proc[]>();
  for (const p of procs) (children.get(p.ppid) ?? children.set(p.ppid, []).get(p.ppid)!).push(p);
  const seen = new Set<number>();
  const stack = procs.filter((p) => root.test(p.cmd));
  let ticks = 0;
  let wakeups = 0;
  while (stack.length > 0) {
    const p = stack.pop()!;
    if (seen.has(p.pid)) continue;
    seen.add(p.pid);
    ticks += p.ticks;
    wakeups += voluntarySwitches(p.pid);
    stack.push(...(children.get(p.pid) ?? []));
  }
  return { cpuSeconds: ticks / TICKS_PER_SEC, wakeups, processes: seen.size };
}

/** CPU use (cores) and wake-ups per second of the trees over `ms`. */
export async function measureTree(root: RegExp, ms: number): Promise<{ cores: number; wakeupsPerSec: number; processes: number }> {
  const a = sampleTree(root);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, ms));
  const b = sampleTree(root);
  const secs = (performance.now() - t0) / 1000;
  return { cores: Math.round(((b.cpuSeconds - a.cpuSeconds) / secs) * 1000) / 1000, wakeupsPerSec: Math.round((b.wakeups - a.wakeups) / secs), processes: b.processes };
}
