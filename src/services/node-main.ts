// Entry point of every dvote node program (manager, broker, shard).
// One bundle runs every role so that one image serves the whole cluster.
//   node node-main.js --version
//   DVOTE_CONFIG='{...}' node node-main.js
import { parseNodeConfig, type NodeConfig } from './common/node-config.js';
import { createLogger } from './common/logger.js';

export const VERSION = '0.1.0';

type Stopper = () => Promise<void>;

async function startRole(config: NodeConfig): Promise<Stopper> {
  const log = createLogger(config.id, config.logLevel);
  switch (config.role) {
    case 'manager': {
      const { runManager } = await import('./manager/run-manager.js');
      return runManager(config, log);
    }
    case 'postgres': {
      const { runPostgres } = await import('./postgres/run-postgres.js');
      return runPostgres(config, log);
    }
    case 'shard': {
      const { runShard } = await import('./shard/run-shard.js');
      return runShard(config, log);
    }
    case 'broker': {
      const { runBroker } = await import('./broker/run-broker.js');
      return runBroker(config, log);
    }
    default:
      throw new Error(`role ${config.role} is not implemented yet`);
  }
}

async function run(argv: string[]): Promise<number> {
  const args = argv.slice(2);
  if (args[0] === '--supervise') return (await import('./supervise.js')).supervise(args.slice(1));
  if (args.includes('--version')) {
    process.stdout.write(`dvote-node ${VERSION} node ${process.version}\n`);
    return 0;
  }
  let config: NodeConfig;
  try {
    config = parseNodeConfig(process.env.DVOTE_CONFIG);
  } catch (e) {
    process.stderr.write(`dvote-node: ${(e as Error).message}\n`);
    return 2;
  }
  let stop: Stopper;
  try {
    stop = await startRole(config);
  } catch (e) {
    process.stderr.write(`dvote-node ${config.id}: failed to start: ${(e as Error).stack ?? e}\n`);
    return 1;
  }
  await new Promise<void>((resolve) => {
    const onSignal = (sig: string) => {
      process.stderr.write(`dvote-node ${config.id}: ${sig}, stopping\n`);
      const force = setTimeout(() => process.exit(0), 5000);
      force.unref();
      stop().finally(() => resolve());
    };
    process.once('SIGTERM', () => onSignal('SIGTERM'));
    process.once('SIGINT', () => onSignal('SIGINT'));
  });
  return 0;
}

run(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`dvote-node: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  },
);
