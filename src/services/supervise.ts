// The process runtime's supervisor, reached through the node program bundle
// so that one file ships everything a node needs:
//   node node-main.js --supervise <nodeDir>
// See runtime/process-supervisor.ts.
import { resolve } from 'node:path';
import { runSupervisor } from '../runtime/process-supervisor.js';

export async function supervise(args: string[]): Promise<number> {
  const nodeDir = args[0];
  if (!nodeDir) {
    process.stderr.write('dvote-node: --supervise needs the node folder: node-main.js --supervise <nodeDir>\n');
    return 2;
  }
  return runSupervisor(resolve(nodeDir));
}
