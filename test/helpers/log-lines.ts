import { createLogger, type Logger } from '@pga/logger';

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A logger at info level whose JSON lines are kept in `lines`, for tests that check what a service said. */
export function capturingLogger(name: string): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger({
    name,
    level: 'info',
    destination: { write: (line: string) => void lines.push(JSON.parse(line)) },
  });
  return { logger, lines };
}
