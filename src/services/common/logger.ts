// Structured JSON logs on stdout (the runtimes collect them: docker logs, or
// a log file per process).
import pino from 'pino';

export type Logger = pino.Logger;

export function createLogger(name: string, level: string = process.env.DVOTE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ name, level, base: { node: name }, timestamp: pino.stdTimeFunctions.isoTime });
}
