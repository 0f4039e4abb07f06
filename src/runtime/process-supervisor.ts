// The per-node supervisor of the process runtime: what a restart policy is
// for a container. ProcessRuntime starts it detached (its own session and
// process group), so it and its node outlive the dvote command; it runs the
// node program, appends its output to node.log and restarts it when it exits
// by itself, with a backoff. It runs from the node program bundle:
//   node node-main.js --supervise <nodeDir>
//
// Signals it understands: SIGTERM/SIGINT = stop (forwarded to the node, which
// is continued first in case it is paused; SIGKILL after a grace period).
// An injected kill is not a signal to the supervisor: `dvote kill` writes the
// `killed` marker and signals the node; the supervisor reads the marker after
// the node has exited and then does not restart it.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, openSync } from 'node:fs';
import { NodeDir, type StoredNode, type SupervisorStatus } from './process-node-dir.js';

export const BACKOFF = {
  /** Delay before the first restart after a crash. */
  initialMs: 100,
  maxMs: 5_000,
  /** A node that ran this long before it crashed is restarted after initialMs again. */
  resetAfterMs: 10_000,
} as const;

/** How long a node may take to stop after SIGTERM before the supervisor kills it. */
const STOP_GRACE_MS = 8_000;
/** How often the backoff pause looks for a `killed` marker. */
const MARKER_POLL_MS = 100;

/** Delay before the next restart: doubling from 100 ms to 5 s, back to 100 ms after a run of 10 s. */
export function nextBackoffMs(previousMs: number | null, ranMs: number): number {
  if (previousMs === null || ranMs >= BACKOFF.resetAfterMs) return BACKOFF.initialMs;
  return Math.min(previousMs * 2, BACKOFF.maxMs);
}

interface ExitInfo {
  code: number | null;
  signal: string | null;
  error?: string;
}

/** Runs until the node is stopped or killed on purpose (or exits with restartOnCrash false). Returns the exit code. */
export async function runSupervisor(path: string): Promise<number> {
  const dir = new NodeDir(path);
  const stored = dir.readSpec();
  const say = (msg: string) => {
    try {
      appendFileSync(dir.logFile, `${new Date().toISOString()} dvote-supervisor[${process.pid}] ${msg}\n`);
    } catch {
      // The folder was removed under us: nothing left to report to.
    }
  };
  if (!stored) {
    say(`no valid ${dir.file('spec.json')}: nothing to supervise`);
    return 2;
  }
  const name = stored.spec.name;

  let stopping = false;
  let child: ChildProcess | null = null;
  let wake: (() => void) | null = null;
  const onStop = (signal: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    say(`${signal}: stopping ${name}`);
    if (child?.pid) {
      child.kill('SIGTERM');
      // A paused (SIGSTOPped) node only sees SIGTERM once it runs again.
      child.kill('SIGCONT');
      const c = child;
      setTimeout(() => c.kill('SIGKILL'), STOP_GRACE_MS).unref();
    }
    wake?.();
  };
  process.on('SIGTERM', () => onStop('SIGTERM'));
  process.on('SIGINT', () => onStop('SIGINT'));
  // No terminal: a hang-up is never a request to stop.
  process.on('SIGHUP', () => undefined);

  const previous = dir.readStatus();
  const status: SupervisorStatus = {
    supervisorPid: process.pid,
    nodePid: null,
    startedAt: previous?.startedAt ?? null,
    restartCount: previous?.restartCount ?? 0,
    lastExit: previous?.lastExit ?? null,
    nextStartAt: null,
  };
  let backoff: number | null = null;
  let firstRun = true;

  while (!stopping && !dir.hasMarker('killed')) {
    if (!firstRun) status.restartCount++;
    firstRun = false;
    const started = Date.now();
    const run = startNode(stored, dir);
    child = run.child;
    status.nodePid = child.pid ?? null;
    status.startedAt = new Date(started).toISOString();
    status.nextStartAt = null;
    if (child.pid) dir.writePid('node', child.pid);
    dir.writeStatus(status);
    say(`started ${name} pid ${child.pid ?? '-'}${status.restartCount ? ` (restart ${status.restartCount})` : ''}`);
    // A kill that wrote its marker before this node.pid existed signalled the
    // previous pid; this check catches it (the killer writes the marker first).
    if (dir.hasMarker('killed') && child.pid) child.kill('SIGKILL');

    const exit = await run.exited;
    const ranMs = Date.now() - started;
    if (child.pid) dir.clearPid('node', child.pid);
    // A pause ends with the process it froze.
    dir.clearMarker('paused');
    child = null;
    status.nodePid = null;
    status.lastExit = { code: exit.code, signal: exit.signal, at: new Date().toISOString(), ranMs };
    dir.writeStatus(status);
    const how = exit.error ?? (exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`);

    // Only now, after the exit, is the marker of a kill that caused it certain to exist.
    if (stopping) {
      say(`${name} stopped (${how})`);
      break;
    }
    if (dir.hasMarker('killed')) {
      say(`${name} killed on purpose (${how}); not restarting`);
      break;
    }
    if (stored.spec.restartOnCrash === false) {
      say(`${name} exited (${how}) after ${(ranMs / 1000).toFixed(1)} s; restartOnCrash is off`);
      break;
    }
    backoff = nextBackoffMs(backoff, ranMs);
    status.nextStartAt = new Date(Date.now() + backoff).toISOString();
    dir.writeStatus(status);
    say(`${name} exited (${how}) after ${(ranMs / 1000).toFixed(1)} s; restarting in ${backoff} ms`);
    // In slices, so that a kill during the pause ends the supervisor promptly.
    const due = Date.now() + backoff;
    while (!stopping && !dir.hasMarker('killed') && Date.now() < due) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(MARKER_POLL_MS, due - Date.now()));
        wake = () => {
          clearTimeout(t);
          resolve();
        };
      });
      wake = null;
    }
  }

  status.nextStartAt = null;
  dir.writeStatus(status);
  dir.clearPid('supervisor', process.pid);
  return 0;
}

function startNode(stored: StoredNode, dir: NodeDir): { child: ChildProcess; exited: Promise<ExitInfo> } {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    ...stored.runtimeEnv,
    ...(stored.spec.env ?? {}),
    DVOTE_CONFIG: JSON.stringify(stored.spec.config),
  };
  // The node writes straight into the log file (O_APPEND), so its output is
  // kept even if the supervisor itself dies.
  const fd = openSync(dir.logFile, 'a');
  let child: ChildProcess;
  try {
    child = spawn(stored.nodeBinary, [stored.program], { cwd: dir.path, env, stdio: ['ignore', fd, fd] });
  } finally {
    closeSync(fd);
  }
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    // A failed spawn (binary gone) emits 'error' and no 'exit'.
    child.once('error', (e) => resolve({ code: null, signal: null, error: `could not start: ${e.message}` }));
  });
  return { child, exited };
}
