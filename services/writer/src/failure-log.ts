import type { Logger } from '@pga/logger';

/** At most this many distinct errors are summarised at once; beyond, each is logged as it comes. */
const MAX_KEYS = 100;

/**
 * Job failures that repeat, as few lines: an error that is not about the connection (a revoked
 * privilege, a trigger refusing rows) fails every job on every attempt, and a warning with its stack
 * per failure wrote 12,000 lines in 30 s. The first failure with a given message is logged with its
 * stack; the same message again within `everyMs` is counted, and one line says how many when that
 * time is up. `always` (a dead letter: its job id matters) writes a line each time, with the stack
 * only the first time.
 */
export function createFailureLog(logger: Logger, everyMs = 60_000) {
  const repeats = new Map<
    string,
    { count: number; timer: NodeJS.Timeout; level: 'warn' | 'error'; message: string; text: string }
  >();
  const seconds = Math.round(everyMs / 1000);
  const summarise = (key: string) => {
    const entry = repeats.get(key);
    if (!entry) return;
    clearTimeout(entry.timer);
    repeats.delete(key);
    const { count, level, message, text } = entry;
    if (count)
      logger[level](
        { err: text, repeats: count },
        `${message}: ${count} more time${count === 1 ? '' : 's'} in ${seconds} s with the same error`,
      );
  };
  return {
    report(
      level: 'warn' | 'error',
      err: unknown,
      fields: Record<string, unknown>,
      message: string,
      { always = false } = {},
    ): void {
      const text = err instanceof Error ? err.message : String(err);
      const key = `${level}\u0000${message}\u0000${text}`;
      const entry = repeats.get(key);
      if (entry) {
        if (always) logger[level]({ ...fields, err: text }, message);
        else entry.count++;
        return;
      }
      logger[level]({ ...fields, err }, message);
      if (repeats.size >= MAX_KEYS) return;
      const timer = setTimeout(() => summarise(key), everyMs);
      timer.unref();
      repeats.set(key, { count: 0, timer, level, message, text });
    },
    /** Says what is still counted (at shutdown). */
    close(): void {
      for (const key of [...repeats.keys()]) summarise(key);
    },
  };
}
