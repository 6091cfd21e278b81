import { pino } from 'pino';
import { REDACT_PATHS, type Logger } from '@pga/logger';

/**
 * The collector logs JSON lines to stderr (same redaction as every process), so stdout carries only
 * what the CLI prints: the `--dry-run` JSON, the `--once` summary, the `--check` report.
 */
export function createCollectorLogger(level: string): Logger {
  return pino(
    {
      name: 'collector',
      level,
      redact: { paths: [...REDACT_PATHS, 'target.password'], censor: '[redacted]' },
      base: { pid: process.pid },
    },
    pino.destination(2),
  );
}
