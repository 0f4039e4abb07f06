import type { NodeConfig } from '../common/node-config.js';
import type { Logger } from '../common/logger.js';
import { PostgresNode } from './postgres-node.js';

export async function runPostgres(config: NodeConfig, log: Logger): Promise<() => Promise<void>> {
  const node = new PostgresNode(config, log);
  // PostgreSQL died under us: exit non-zero so the runtime restarts the node
  // (crash recovery runs at the next start).
  node.onFatal = (reason) => {
    log.fatal({ reason }, 'stopping the node so that its runtime restarts it');
    void node.stop().finally(() => process.exit(1));
    setTimeout(() => process.exit(1), 3_000).unref();
  };
  try {
    await node.start();
  } catch (e) {
    await node.stop().catch(() => undefined);
    throw e;
  }
  return () => node.stop();
}
