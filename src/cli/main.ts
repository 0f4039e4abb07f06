// The dvote command line. Declaring commands (flags, help) lives in
// commands/*.ts; each action parses its flags into a typed options object and
// calls a plain async function. This file holds the ONE place that turns
// errors into exit codes: commands throw DvoteError and never call
// process.exit.
import { Command, CommanderError, Option } from 'commander';
import { DvoteError, ExitCode } from '../core/errors.js';
import { Output } from './output/output.js';
import { registerUp } from './commands/up.js';
import { registerStatus } from './commands/status.js';
import { registerKill } from './commands/kill.js';
import { registerLogs } from './commands/logs.js';
import { registerDown } from './commands/down.js';
import { registerScale } from './commands/scale.js';
import { registerImages } from './commands/images.js';
import { registerReport } from './commands/report.js';
import { registerBench } from './commands/bench.js';
import { registerDemo } from './commands/demo.js';
import { registerVote } from './commands/vote.js';
import { registerTally } from './commands/tally.js';
import { VERSION } from './version.js';

export interface GlobalOptions {
  cluster?: string;
  json?: boolean;
  quiet?: boolean;
  color?: boolean;
}

/** What every command's action gets. */
export interface CommandContext {
  out: Output;
  globals: GlobalOptions;
  /** Set by a command to report "ran fine but found a problem" (exit 1). */
  setExitCode(code: ExitCode): void;
  /** Aborted on Ctrl-C: long steps (image builds, waits) stop early and clean up. */
  signal: AbortSignal;
}

export function buildProgram(
  run: (action: (ctx: CommandContext) => Promise<void>, cmd: Command) => Promise<void>,
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream } = {},
): Command {
  const program = new Command('dvote');
  // Set before adding commands so every subcommand inherits them: errors are
  // thrown (main maps them to exit codes) and output goes where main says.
  program.exitOverride();
  program.configureOutput({
    writeOut: (s) => (io.stdout ?? process.stdout).write(s),
    writeErr: (s) => (io.stderr ?? process.stderr).write(s),
  });
  program
    .description(
      'Run a sharded, replicated e-voting cluster on this machine (Raft managers, a Raft-replicated vote log on brokers, PostgreSQL voting shards), break it on purpose, load it with votes, and watch it hold.',
    )
    .version(VERSION, '-V, --version')
    .addOption(new Option('--cluster <name>', 'cluster name (default: dvote)').env('DVOTE_CLUSTER'))
    .option('--json', 'print one JSON document on stdout (progress stays on stderr)')
    .option('-q, --quiet', 'no progress output')
    .option('--no-color', 'no colour')
    .showHelpAfterError('(run with --help for usage)')
    .addHelpText(
      'after',
      `
Examples:
  $ dvote up                       # default cluster: 3 managers, 3 brokers, 2 shards (primary + 2 replicas)
  $ dvote up --managers 5 --brokers 0 --shards 0
  $ dvote status --json | jq '.nodes[] | select(.role=="manager")'
  $ dvote kill --role manager --leader
  $ dvote down --volumes

Exit codes: 0 ok, 1 unhealthy or a check failed, 2 bad usage or input, 3 runtime unavailable.
JSON documents carry "schema": "dvote.<kind>/v1" (see README.md).`,
    );
  const register = [registerUp, registerStatus, registerScale, registerKill, registerLogs, registerDown, registerImages, registerVote, registerTally, registerBench, registerReport, registerDemo];
  for (const r of register) r(program, run);
  return program;
}

export async function main(argv: string[], io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream & { isTTY?: boolean } } = {}): Promise<number> {
  let exitCode: ExitCode = ExitCode.Ok;
  let out: Output | null = null;
  const abort = new AbortController();
  const onSigint = () => {
    if (abort.signal.aborted) process.exit(130);
    abort.abort();
  };
  process.on('SIGINT', onSigint);

  const run = async (action: (ctx: CommandContext) => Promise<void>, cmd: Command): Promise<void> => {
    const globals = cmd.optsWithGlobals() as GlobalOptions;
    out = new Output({
      json: Boolean(globals.json),
      quiet: Boolean(globals.quiet),
      color: globals.color !== false,
      ...(io.stderr ? { stderr: io.stderr } : {}),
      ...(io.stdout ? { stdout: io.stdout } : {}),
    });
    await action({
      out,
      globals,
      setExitCode: (c) => {
        if (c > exitCode) exitCode = c;
      },
      signal: abort.signal,
    });
  };

  const program = buildProgram(run, io);
  try {
    await program.parseAsync(argv);
    return exitCode;
  } catch (e) {
    return reportError(e, out ?? new Output({ json: false, ...(io.stderr ? { stderr: io.stderr } : {}) }));
  } finally {
    process.off('SIGINT', onSigint);
  }
}

function reportError(e: unknown, out: Output): number {
  if (e instanceof CommanderError) {
    // --help and --version are not errors.
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return ExitCode.Ok;
    // Commander already printed its message (and the help hint).
    return ExitCode.Usage;
  }
  if (e instanceof DvoteError) {
    out.error(e.message);
    for (const d of e.details) out.info(`  ${d}`);
    return e.exitCode;
  }
  const err = e as Error;
  out.error(`unexpected failure: ${err.message}`);
  if (process.env.DVOTE_DEBUG) out.info(err.stack ?? '');
  else out.info('  (set DVOTE_DEBUG=1 for the stack trace; please report it)');
  return ExitCode.Unhealthy;
}
