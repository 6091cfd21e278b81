/** One reason's count while it lasts (from its first occurrence until `end`). */
export interface ThrottledReason<D> {
  /** When its first occurrence came (ms, the throttle's clock). */
  since: number;
  /** When its last line was written. */
  lastLine: number;
  /** Occurrences since the first, the first included. */
  count: number;
  /** What the caller keeps of it (its text, its SQLSTATE …), from its first occurrence. */
  data: D;
}

/** What to write for an occurrence: nothing (undefined), or a line, with what it says. */
export type ThrottleLine<D> =
  | { first: true; reason: ThrottledReason<D> }
  | {
      first: false;
      reason: ThrottledReason<D>;
      /** Occurrences since the previous line of this reason that got no line. */
      suppressed: number;
    };

/**
 * When to write a line for something that may happen many times a second for as long as a cause
 * lasts, per reason (a SQLSTATE, an error's text): its first occurrence at once, then at most one
 * line per `everyMs` (at the first occurrence after that time), each with the counts since; `end`
 * (the work succeeded again) closes a reason, for one last line of the caller's, and its next
 * occurrence is a first one again. Says when and with what counts only: the words are the caller's.
 * Used by the writer's PostgreSQL task log (pg-task-log.ts) and the admin's 503 log
 * (logDatabaseUnavailable). Not by `createOutageLog`: that is one outage per dependency, whatever
 * errors it is made of, with a probe and a reconnect to end it.
 */
export function createReasonThrottle<D = undefined>({
  everyMs = 60_000,
  now = () => Date.now(),
}: { everyMs?: number; now?: () => number } = {}) {
  const reasons = new Map<string, ThrottledReason<D> & { suppressed: number }>();
  return {
    /**
     * An occurrence of `key`: the line to write, or undefined (counted). `data`: what to keep of a
     * first occurrence; `every`: this call's interval instead of `everyMs`.
     */
    note(key: string, data: () => D, every = everyMs): ThrottleLine<D> | undefined {
      const t = now();
      const reason = reasons.get(key);
      if (!reason) {
        const first = { since: t, lastLine: t, count: 1, data: data(), suppressed: 0 };
        reasons.set(key, first);
        return { first: true, reason: first };
      }
      reason.count++;
      if (t - reason.lastLine < every) {
        reason.suppressed++;
        return undefined;
      }
      const suppressed = reason.suppressed;
      reason.lastLine = t;
      reason.suppressed = 0;
      return { first: false, reason, suppressed };
    },
    /** Closes every reason, and returns them (first noted first) for their last lines. */
    end(): ThrottledReason<D>[] {
      const ended = [...reasons.values()];
      reasons.clear();
      return ended;
    },
    /** Whether a reason is open. */
    get active(): boolean {
      return reasons.size > 0;
    },
    /** The throttle's clock (ms). */
    now,
  };
}

export type ReasonThrottle<D> = ReturnType<typeof createReasonThrottle<D>>;
