// A small entry point for the process runtime's supervisor
// (`node supervisor.js --supervise <nodeDir>`): the same logic as
// `node-main.js --supervise`, without loading the whole node program, so each
// supervisor starts faster and uses less memory.
import { supervise } from './supervise.js';

const args = process.argv.slice(2);
const i = args.indexOf('--supervise');
supervise(i >= 0 ? args.slice(i + 1) : args).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`dvote supervisor: ${(e as Error).stack ?? e}\n`);
    process.exitCode = 1;
  },
);
