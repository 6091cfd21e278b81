import { pino, type DestinationStream, type Logger, type LoggerOptions } from 'pino';

export type { Logger };

/** Paths pino replaces with "[redacted]" wherever they appear in a log object. */
export const REDACT_PATHS = [
  'password',
  '*.password',
  'token',
  '*.token',
  'secret',
  '*.secret',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'headers["x-registration-secret"]',
  'ssl_certificate',
  '*.ssl_certificate',
  'params',
  '*.params',
];

export interface CreateLoggerOptions {
  /** Process name, e.g. "ingest-edge". */
  name: string;
  /** pino level; default "info". */
  level?: string;
  /** Pretty-print for a person; default: only when stdout is a terminal. */
  pretty?: boolean;
  /** Where the JSON lines go instead of stdout (tests read them); implies `pretty: false`. */
  destination?: DestinationStream;
}

/** The one root logger of a process: JSON lines, pretty only in a terminal, secrets redacted. */
export function createLogger({
  name,
  level = 'info',
  pretty = process.stdout.isTTY === true,
  destination,
}: CreateLoggerOptions): Logger {
  const options: LoggerOptions = {
    name,
    level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { pid: process.pid },
  };
  if (destination) return pino(options, destination);
  if (pretty) {
    return pino({ ...options, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'HH:MM:ss.l' } } });
  }
  return pino(options);
}

export {
  createOutageLog,
  isConnectionError,
  isRefusalError,
  UNTRUSTED_CERT_CODES,
  type OutageLog,
  type OutageLogOptions,
} from './outage-log';
export { createReasonThrottle, type ReasonThrottle, type ThrottledReason, type ThrottleLine } from './reason-throttle';
export { ClockSkewWatch, CLOCK_SKEW_WARN_MS, CLOCK_READING_MAX_ROUND_TRIP_MS, CLOCK_READING_STALE_MS } from './clock-skew';
