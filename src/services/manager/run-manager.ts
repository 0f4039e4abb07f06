import type { NodeConfig } from '../common/node-config.js';
import type { Logger } from '../common/logger.js';
import { ManagerNode } from './manager-node.js';

export async function runManager(config: NodeConfig, log: Logger): Promise<() => Promise<void>> {
  const node = new ManagerNode(config, log);
  await node.start();
  log.info(
    { http: config.advertise.http, raft: config.advertise.raft, httpPort: node.httpPort, raftPort: node.host.port },
    'manager started',
  );
  return () => node.stop();
}
