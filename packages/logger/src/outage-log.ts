import type { Logger } from 'pino';

/** Error codes and messages of a dependency that is unreachable, not of a request that failed. */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
]);
/**
 * TLS handshakes that fail: the server's certificate not trusted (a private CA Node was not given),
 * expired, for another name, or a server that does not speak TLS. A connection that cannot be made,
 * retried by every client several times a second, like any other (one line per outage, not a
 * warning with a stack per attempt).
 */
export const UNTRUSTED_CERT_CODES: ReadonlySet<string> = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
]);
const TLS_OTHER = new Set([
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'EPROTO',
  'ERR_SSL_WRONG_VERSION_NUMBER',
]);
const CONNECTION_MESSAGES =
  /^(Connection is closed|Connection terminated|connect ETIMEDOUT|read ECONNRESET|Stream isn't writeable|Reached the max retries per request limit)/;
/** PostgreSQL SQLSTATEs of a server that is going or not yet there: connection exceptions, shutdowns, starting up. */
const POSTGRES_AWAY = /^(08...|57P0[123])$/;

/**
 * Redis error replies of a server that is up but refuses commands for now, whoever sends them: over
 * `maxmemory` with noeviction (OOM), a read-only replica (READONLY), a failed background save with
 * stop-writes-on-bgsave-error (MISCONF), loading its data set at start (LOADING), a replica without
 * its primary (MASTERDOWN), too few replicas (NOREPLICAS), a script running too long (BUSY).
 */
const REFUSAL_REPLIES = /(^|: )(OOM|READONLY|MISCONF|LOADING|MASTERDOWN|NOREPLICAS|BUSY) /;

export function isRefusalError(err: unknown): boolean {
  return err instanceof Error && REFUSAL_REPLIES.test(err.message);
}

export function isConnectionError(err: unknown): boolean {
  if (!(err instanceof Error)) return false;
  const code = (err as { code?: unknown }).code;
  if (
    typeof code === 'string' &&
    (CONNECTION_CODES.has(code) || POSTGRES_AWAY.test(code) || UNTRUSTED_CERT_CODES.has(code) || TLS_OTHER.has(code))
  )
    return true;
  return CONNECTION_MESSAGES.test(err.message);
}

export interface OutageLogOptions {
  /** While the outage lasts, one summary line per this many ms; default 60 000. */
  summaryEveryMs?: number;
  /** Clock, for tests; default Date.now. */
  now?: () => number;
  /**
   * For a dependency that nothing else retries while it is away (a pool that connects only when a
   * request needs it): tried every `probeEveryMs` (default 2 000) from the outage's first error on;
   * the first that resolves ends the outage (`recovered()`). Without it, "reachable again after N s"
   * would wait for the next request that needed the dependency, and overstate the outage.
   */
  probe?: () => Promise<unknown>;
  probeEveryMs?: number;
}

/**
 * One dependency's connection trouble as a few log lines instead of one per reconnect attempt and
 * client: every ioredis client and BullMQ queue or worker of a process retries on its own (several
 * times a second each), and logging each error wrote hundreds of identical warnings a minute over
 * whatever else the log said. Now: the first connection error → one warning ("unreachable … retrying"),
 * further ones are counted, one summary per `summaryEveryMs` while it lasts, and `recovered()` (call
 * it on the client's `ready`) → one line saying how long it lasted. A server that is up but refuses
 * commands (`isRefusalError`: Redis out of memory, read-only, …; BullMQ passes some on inside a
 * message of its own, "Failed to add repeatable job …: OOM command not allowed …") is an outage too,
 * told as "refusing commands" … "accepting commands again". With a probe, an error within one probe
 * interval after an outage ended may be the late answer of a command sent during it (on a busy
 * machine it can be read after the probe's success): it starts a new outage only once a probe fails
 * too, and a probe that succeeds drops it without a word. Other errors are logged as they come, with
 * the given message.
 */
export function createOutageLog(logger: Logger, dependency: string, options: OutageLogOptions = {}) {
  const every = options.summaryEveryMs ?? 60_000;
  const now = options.now ?? Date.now;
  let since: number | undefined;
  let errors = 0;
  let lastSummary = 0;
  let last = '';
  /** What the outage is: unreachable (connection errors) or up but refusing commands (refusal replies). */
  let refusing = false;
  let probing: NodeJS.Timeout | undefined;
  let probeInFlight = false;
  /** Outages so far: a probe answered after its outage ended (and another began) ends nothing. */
  let outages = 0;
  /** After close(): no probe starts again, and none that was in flight ends an outage. */
  let closed = false;
  /** When the last outage ended (ms, `now`). */
  let endedAt: number | undefined;
  /** An error just after an outage ended, waiting for a probe to confirm it: what it said, and when. */
  let suspect: { at: number; text: string; refusal: boolean; hint: string } | undefined;
  const stopProbing = () => {
    clearInterval(probing);
    probing = undefined;
  };
  const probeEvery = options.probeEveryMs ?? 2000;
  const runProbe = () => {
    const probe = options.probe;
    if (!probe || probeInFlight || closed) return;
    probeInFlight = true;
    const outage = outages;
    const checking = suspect;
    probe().then(
      () => {
        probeInFlight = false;
        if (closed) return;
        if (checking === undefined) {
          // (Sent before an error that came after the outage ended: it says nothing of that one.)
          if (outage === outages && suspect === undefined) log.recovered();
        } else if (checking === suspect) {
          suspect = undefined; // a late answer from the last outage: nothing to say
          errors = 0;
          stopProbing();
        }
      },
      () => {
        probeInFlight = false;
        if (checking !== undefined && checking === suspect && !closed) begin(checking);
      },
    );
  };
  const startProbing = () => {
    if (!options.probe || probing || closed) return;
    probing = setInterval(runProbe, probeEvery);
    probing.unref();
  };
  /** An outage starts: its one warning. */
  const begin = (first: { at: number; text: string; refusal: boolean; hint: string }) => {
    suspect = undefined;
    since = first.at;
    lastSummary = first.at;
    refusing = first.refusal;
    outages++;
    startProbing();
    logger.warn(
      { err: first.text },
      `${dependency} ${refusing ? 'refusing commands' : 'unreachable'}: ${first.text}${first.hint}; retrying (further errors summarised every ${Math.round(every / 1000)} s)`,
    );
  };

  const log = {
    /** Handles an `error` event: `message` is the line written for an error that is not a connection error. */
    error(err: unknown, message: string, fields: Record<string, unknown> = {}): void {
      const refusal = isRefusalError(err);
      if (!refusal && !isConnectionError(err)) {
        logger.warn({ ...fields, err }, message);
        return;
      }
      const text = (err as Error).message;
      const code = (err as { code?: unknown }).code;
      const hint =
        typeof code === 'string' && UNTRUSTED_CERT_CODES.has(code)
          ? " (the server's TLS certificate is not signed by a CA this process trusts: give the CA's PEM file in NODE_EXTRA_CA_CERTS)"
          : '';
      const t = now();
      errors++;
      last = text;
      if (since === undefined) {
        if (suspect === undefined && options.probe && !closed && endedAt !== undefined && t - endedAt < probeEvery) {
          suspect = { at: t, text, refusal, hint };
          runProbe();
          startProbing();
          return;
        }
        // Errors go on past a probe interval: whatever the probe says, it is an outage.
        if (suspect === undefined || t - suspect.at >= probeEvery) begin(suspect ?? { at: t, text, refusal, hint });
        return;
      }
      if (t - lastSummary >= every) {
        lastSummary = t;
        const s = Math.round((t - since) / 1000);
        logger.warn(
          { err: last, errors, seconds: s },
          refusing
            ? `${dependency} still refusing commands after ${s} s (${errors} errors); retrying`
            : `${dependency} still unreachable after ${s} s (${errors} connection errors); retrying`,
        );
      }
    },
    /**
     * A connection is (back) up — call it on `ready`. It ends an outage of connection errors; one of
     * refusals (Redis up but refusing commands) outlives a reconnect, and only `recovered()` (the
     * probe, or a command that succeeded) ends it.
     */
    connected(): void {
      if (!refusing) log.recovered();
    },
    /**
     * The dependency works again: one line if there was an outage. `startedAt` (this log's clock):
     * when the work that succeeded began; work begun before the outage's first error (a query that
     * was already running when PostgreSQL began shutting down, its success read after the cut-off
     * connection's error) says nothing about whether the outage is over, and is ignored.
     */
    recovered(startedAt?: number): void {
      if (since !== undefined && startedAt !== undefined && startedAt < since) return;
      stopProbing();
      if (since === undefined) {
        suspect = undefined;
        errors = 0;
        return;
      }
      const seconds = (now() - since) / 1000;
      logger.info(
        { errors, seconds: Math.round(seconds * 10) / 10 },
        `${dependency} ${refusing ? 'accepting commands' : 'reachable'} again after ${seconds.toFixed(1)} s`,
      );
      since = undefined;
      endedAt = now();
      errors = 0;
    },
    /** Whether an outage is under way (an error just after the last one ended counts once a probe confirms it). */
    get failing(): boolean {
      return since !== undefined;
    },
    /** Stops the probe for good (at shutdown); the outage, if any, stays as it is. */
    close(): void {
      closed = true;
      stopProbing();
    },
  };
  return log;
}

export type OutageLog = ReturnType<typeof createOutageLog>;
