// The replication path for a mode and a cluster: with brokers every mode goes
// through the vote log; without brokers only sync is allowed (the topology
// refuses the others) and writes the replicas directly.
import type { ReplicationMode } from '../../core/topology.js';
import { AsyncPath } from './async-path.js';
import { LogPath } from './log-path.js';
import type { PathDeps, ReplicationPath } from './replication-path.js';
import { SyncDirectPath } from './sync-direct-path.js';

export function createReplicationPath(mode: ReplicationMode, deps: PathDeps): ReplicationPath {
  if (!deps.writer) {
    if (mode !== 'sync') throw new Error(`replication "${mode}" needs brokers (the vote log); only "sync" works without them`);
    return new SyncDirectPath(deps);
  }
  return mode === 'async' ? new AsyncPath(deps) : new LogPath(mode, deps);
}
