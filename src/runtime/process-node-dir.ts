// The process runtime's state for one node: a folder that plays the role
// docker labels and container state play for the docker runtime. The CLI
// (process.ts) and the per-node supervisor (process-supervisor.ts) share it,
// and nothing else records cluster state.
//
//   <state>/clusters/<cluster>/nodes/<name>/
//     spec.json        the NodeSpec, its labels and config hash (written by the CLI)
//     data/            the node's data directory (Addressing.dataDir)
//     node.log         the node's stdout/stderr as-is, plus timestamped supervisor lines
//     supervisor.pid   pid of the supervisor (written by the CLI when it spawns it)
//     node.pid         pid of the running node program (written by the supervisor)
//     status.json      restart count, start time, last exit (written by the supervisor)
//     killed, paused   markers of injected faults (their presence is the state)
//
// Every file is replaced atomically (write, then rename) because the CLI and
// the supervisor read each other's files at any moment.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { NodeSpec } from './runtime.js';

export const NODE_FILE = {
  spec: 'spec.json',
  data: 'data',
  log: 'node.log',
  supervisorPid: 'supervisor.pid',
  nodePid: 'node.pid',
  status: 'status.json',
} as const;

export type NodeMarker = 'killed' | 'paused';

/** spec.json: what the supervisor runs and what listNodes reports. */
export interface StoredNode {
  version: 1;
  spec: NodeSpec;
  /** Standard labels merged with spec.labels, config hash and ports included. */
  labels: Record<string, string>;
  configHash: string;
  /** Absolute path of the node program bundle (dist/services/node-main.js). */
  program: string;
  /** Fingerprint of the program's contents when the node was last started (absent: started by a dvote before this field). */
  programStamp?: string;
  /** The node binary that runs it. */
  nodeBinary: string;
  /** Environment the runtime adds (DVOTE_PG_BIN); not part of the config hash. */
  runtimeEnv: Record<string, string>;
  writtenAt: string;
}

/** status.json: what the supervisor observed. */
export interface SupervisorStatus {
  supervisorPid: number;
  /** The running node program, or null between runs. */
  nodePid: number | null;
  /** When the current (or last) node process was started. */
  startedAt: string | null;
  /** Automatic restarts after crashes, over the life of this node folder. */
  restartCount: number;
  lastExit: { code: number | null; signal: string | null; at: string; ranMs: number } | null;
  /** When a crash-restart is due (the supervisor is in its backoff pause). */
  nextStartAt: string | null;
}

export class NodeDir {
  constructor(readonly path: string) {}

  file(name: string): string {
    return join(this.path, name);
  }

  get dataDir(): string {
    return this.file(NODE_FILE.data);
  }

  get logFile(): string {
    return this.file(NODE_FILE.log);
  }

  exists(): boolean {
    return existsSync(this.path);
  }

  ensure(): void {
    mkdirSync(this.dataDir, { recursive: true });
  }

  readSpec(): StoredNode | null {
    const v = readJson(this.file(NODE_FILE.spec));
    if (!v || typeof v !== 'object' || (v as { version?: unknown }).version !== 1) return null;
    return v as StoredNode;
  }

  writeSpec(stored: StoredNode): void {
    writeAtomic(this.file(NODE_FILE.spec), `${JSON.stringify(stored, null, 2)}\n`);
  }

  readStatus(): SupervisorStatus | null {
    const v = readJson(this.file(NODE_FILE.status));
    return v && typeof v === 'object' ? (v as SupervisorStatus) : null;
  }

  writeStatus(status: SupervisorStatus): void {
    writeAtomic(this.file(NODE_FILE.status), `${JSON.stringify(status)}\n`);
  }

  readPid(which: 'supervisor' | 'node'): number | null {
    const file = this.file(which === 'supervisor' ? NODE_FILE.supervisorPid : NODE_FILE.nodePid);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return null;
    }
    const pid = Number(text.trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  }

  writePid(which: 'supervisor' | 'node', pid: number): void {
    writeAtomic(this.file(which === 'supervisor' ? NODE_FILE.supervisorPid : NODE_FILE.nodePid), `${pid}\n`);
  }

  /** Removes the pid file, but only while it still names `pid` (a newer writer wins). */
  clearPid(which: 'supervisor' | 'node', pid?: number): void {
    if (pid !== undefined && this.readPid(which) !== pid) return;
    rmSync(this.file(which === 'supervisor' ? NODE_FILE.supervisorPid : NODE_FILE.nodePid), { force: true });
  }

  hasMarker(marker: NodeMarker): boolean {
    return existsSync(this.file(marker));
  }

  readMarker(marker: NodeMarker): Record<string, unknown> | null {
    const v = readJson(this.file(marker));
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : null;
  }

  setMarker(marker: NodeMarker, info: Record<string, unknown> = {}): void {
    writeAtomic(this.file(marker), `${JSON.stringify({ at: new Date().toISOString(), ...info })}\n`);
  }

  clearMarker(marker: NodeMarker): void {
    rmSync(this.file(marker), { force: true });
  }
}

function readJson(file: string): unknown {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as unknown;
  } catch {
    return null;
  }
}

function writeAtomic(file: string, text: string): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, text);
  renameSync(tmp, file);
}

/**
 * Is `pid` a live (not zombie) process whose command line passes `expect`?
 * The command-line check guards against a pid reused by an unrelated process
 * after ours died; both checks need /proc and are skipped without it.
 */
export function processAlive(pid: number | null | undefined, expect?: (cmdline: string) => boolean): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
  } catch {
    // ESRCH: gone. EPERM: it exists but belongs to another user, so it is not ours.
    return false;
  }
  const state = procState(pid);
  if (state === 'Z' || state === 'X') return false;
  if (expect && state !== null) {
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      return false;
    }
    if (!expect(cmdline)) return false;
  }
  return true;
}

/** The one-letter state of /proc/<pid>/stat (R, S, T for stopped, Z zombie), or null without /proc. */
export function procState(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name in parentheses may itself contain spaces or parentheses.
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) || null;
  } catch {
    return null;
  }
}

/** Process group id from /proc/<pid>/stat, or null without /proc. */
export function procGroup(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const pgrp = Number(fields[2]);
    return Number.isInteger(pgrp) ? pgrp : null;
  } catch {
    return null;
  }
}

/** Sends a signal, ignoring a process that is already gone. */
export function signalProcess(pid: number, signal: NodeJS.Signals): boolean {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}
