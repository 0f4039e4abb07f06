// Which runtime a command uses. `up --runtime auto` takes Docker when a daemon
// answers and local processes otherwise, and says which. Other commands find
// the runtime that holds the named cluster.
import { DvoteError } from '../core/errors.js';
import { DockerRuntime } from './docker-runtime.js';
import { ProcessRuntime } from './process.js';
import type { Runtime, RuntimeInfo } from './runtime.js';

export type RuntimePreference = 'auto' | 'docker' | 'process';

export interface SelectedRuntime {
  runtime: Runtime;
  info: RuntimeInfo;
  /** Why this runtime was chosen (for humans). */
  reason: string;
}

async function tryDocker(): Promise<{ rt: DockerRuntime; info: RuntimeInfo } | { error: DvoteError }> {
  try {
    const rt = new DockerRuntime();
    const info = await rt.check();
    return { rt, info };
  } catch (e) {
    if (e instanceof DvoteError) return { error: e };
    return { error: new DvoteError('RUNTIME_UNAVAILABLE', `cannot use Docker: ${(e as Error).message}`, 'start dockerd (scripts/setup.sh) or use --runtime process') };
  }
}

/** For `up`: honour the preference; auto = Docker if a daemon answers, else processes. */
export async function selectForUp(pref: RuntimePreference): Promise<SelectedRuntime> {
  if (pref === 'docker') {
    const d = await tryDocker();
    if ('error' in d) throw d.error;
    return { runtime: d.rt, info: d.info, reason: 'asked for with --runtime docker' };
  }
  if (pref === 'process') {
    const rt = new ProcessRuntime();
    return { runtime: rt, info: await rt.check(), reason: 'asked for with --runtime process' };
  }
  const d = await tryDocker();
  if (!('error' in d)) return { runtime: d.rt, info: d.info, reason: 'a Docker daemon answers (use --runtime process for local processes)' };
  const rt = new ProcessRuntime();
  return {
    runtime: rt,
    info: await rt.check(),
    reason: `no Docker daemon answers (${d.error.message.split(':')[0]}); running nodes as local processes`,
  };
}

/** For every other command: the runtime that holds `cluster`. */
export async function selectForCluster(cluster: string, pref: RuntimePreference = 'auto'): Promise<SelectedRuntime> {
  if (pref !== 'auto') {
    const s = await selectForUp(pref);
    return s;
  }
  const found: SelectedRuntime[] = [];
  const d = await tryDocker();
  if (!('error' in d) && (await d.rt.listClusters()).includes(cluster)) {
    found.push({ runtime: d.rt, info: d.info, reason: `cluster "${cluster}" runs on Docker` });
  }
  const p = new ProcessRuntime();
  const pinfo = await p.check().catch(() => null);
  if (pinfo && (await p.listClusters()).includes(cluster)) {
    found.push({ runtime: p, info: pinfo, reason: `cluster "${cluster}" runs as local processes` });
  }
  if (found.length === 1) return found[0]!;
  if (found.length > 1) {
    throw new DvoteError('USAGE', `cluster "${cluster}" exists both on Docker and as local processes`, 'pick one with --runtime docker or --runtime process');
  }
  const dockerNote = 'error' in d ? ` (Docker is not reachable: ${d.error.message.split(':')[0]})` : '';
  throw new DvoteError('NOT_FOUND', `no cluster named "${cluster}" is running${dockerNote}`, 'start one with `dvote up`, or name another with --cluster');
}
