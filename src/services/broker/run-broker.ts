import type { NodeConfig } from '../common/node-config.js';
import type { Logger } from '../common/logger.js';
import { BrokerNode } from './broker-node.js';

export async function runBroker(config: NodeConfig, log: Logger): Promise<() => Promise<void>> {
  const node = new BrokerNode(config, log);
  await node.start();
  log.info({ http: config.advertise.http, raft: config.advertise.raft, httpPort: node.httpPort, raftPort: node.host.port }, 'broker started');
  return () => node.stop();
}
