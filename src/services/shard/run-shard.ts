import type { NodeConfig } from '../common/node-config.js';
import type { Logger } from '../common/logger.js';
import { ShardNode } from './shard-node.js';

export async function runShard(config: NodeConfig, log: Logger): Promise<() => Promise<void>> {
  const node = new ShardNode(config, log);
  await node.start();
  return () => node.stop();
}
