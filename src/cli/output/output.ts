// Compute, then render. Commands build a result object; with --json it is
// printed as one document on stdout, otherwise renderers draw tables and
// messages. Everything for humans (progress, spinners, colour, warnings) goes
// to stderr and stays silent without a TTY or in JSON mode, so
// `dvote status --json | jq` always works.
import { Chalk, type ChalkInstance } from 'chalk';
import ora, { type Ora } from 'ora';

export interface OutputOptions {
  json: boolean;
  quiet?: boolean;
  color?: boolean;
  /** For tests: where human output goes. */
  stderr?: NodeJS.WritableStream & { isTTY?: boolean };
  stdout?: NodeJS.WritableStream;
}

export class Output {
  readonly json: boolean;
  readonly quiet: boolean;
  readonly c: ChalkInstance;
  private readonly err: NodeJS.WritableStream & { isTTY?: boolean };
  private readonly out: NodeJS.WritableStream;
  private spinner: Ora | null = null;

  constructor(opts: OutputOptions) {
    this.json = opts.json;
    this.quiet = opts.quiet ?? false;
    this.err = opts.stderr ?? process.stderr;
    this.out = opts.stdout ?? process.stdout;
    const colorOk = (opts.color ?? true) && Boolean(this.err.isTTY) && !process.env.NO_COLOR;
    this.c = new Chalk({ level: colorOk ? 1 : 0 });
  }

  get interactive(): boolean {
    return Boolean(this.err.isTTY) && !this.json && !this.quiet;
  }

  /** A line for humans on stderr (suppressed by --quiet, kept in --json mode so progress stays visible). */
  info(msg: string): void {
    if (this.quiet) return;
    this.pauseSpinner(() => this.err.write(`${msg}\n`));
  }

  warn(msg: string): void {
    this.pauseSpinner(() => this.err.write(`${this.c.yellow('warning:')} ${msg}\n`));
  }

  error(msg: string): void {
    this.stopSpinner();
    this.err.write(`${this.c.red('error:')} ${msg}\n`);
  }

  /** The machine-readable document (only in JSON mode). */
  document(doc: unknown): void {
    if (this.json) this.out.write(`${JSON.stringify(doc, null, 2)}\n`);
  }

  /** Human result text on stdout (not in JSON mode). */
  print(text: string): void {
    if (!this.json) this.out.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Run a long step with a spinner (TTY) or a start/done line (no TTY). */
  async step<T>(label: string, run: (update: (text: string) => void) => Promise<T>): Promise<T> {
    const start = performance.now();
    if (this.interactive) {
      this.spinner = ora({ text: label, stream: this.err }).start();
    } else if (!this.quiet) {
      this.err.write(`${label} ...\n`);
    }
    const update = (text: string) => {
      if (this.spinner) this.spinner.text = `${label} (${text})`;
    };
    try {
      const r = await run(update);
      const secs = ((performance.now() - start) / 1000).toFixed(1);
      if (this.spinner) this.spinner.succeed(`${label} ${this.c.dim(`${secs}s`)}`);
      else if (!this.quiet) this.err.write(`${label}: done in ${secs}s\n`);
      this.spinner = null;
      return r;
    } catch (e) {
      if (this.spinner) this.spinner.fail(label);
      this.spinner = null;
      throw e;
    }
  }

  private pauseSpinner(write: () => void): void {
    if (this.spinner?.isSpinning) {
      this.spinner.clear();
      write();
      this.spinner.render();
    } else {
      write();
    }
  }

  stopSpinner(): void {
    if (this.spinner) {
      this.spinner.stop();
      this.spinner = null;
    }
  }
}
