// Entry point of every dvote node program (manager, broker, shard, ...).
// One bundle runs every role so that one image serves the whole cluster.
const VERSION = '0.1.0';

async function run(argv: string[]): Promise<number> {
  const args = argv.slice(2);
  if (args.includes('--version')) {
    process.stdout.write(`dvote-node ${VERSION} node ${process.version}\n`);
    return 0;
  }
  process.stderr.write(`dvote-node: no role given (expected one of: manager, broker, shard)\n`);
  return 2;
}

run(process.argv).then((code) => {
  process.exitCode = code;
});
