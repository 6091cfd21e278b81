import { randomUUID } from 'node:crypto';
import { AppError, type EnrollRequest } from '@pga/contracts';
import { sha256Hex, type SecretBox } from '@pga/crypto';
import { isUniqueViolation, recordIssuedToken, withTransaction, type Pool } from '@pga/db';
import type { CollectorTokens, IssuedToken } from '@pga/tokens';

/** An enrollment secret that can still enroll: not revoked, not expired, not used up. */
const LIVE = `revoked_at IS NULL
     AND (expires_at IS NULL OR expires_at > now())
     AND (max_uses IS NULL OR uses < max_uses)`;
const LIVE_SECRET = `secret_hash = $1 AND ${LIVE}`;

const CLAIM_SECRET_SQL = `
  UPDATE enrollment_secrets SET uses = uses + 1
   WHERE ${LIVE_SECRET}
  RETURNING id, name, group_id, environment`;

/**
 * Whether a secret is a live enrollment secret, for an address past its failure limit: it may
 * still enroll with one (enrollment secrets are 256-bit: the limit saves the edge's and
 * PostgreSQL's work on wrong guesses, it protects nothing a right guess could reveal), so wrong
 * secrets from the same address (a proxy, a load balancer, a NAT) cannot lock out the collectors
 * with a good one. Answered from the live secrets' hashes, read at most once per `maxAgeMs` (one
 * query shared by the requests waiting on it): a flood of wrong guesses from a limited address
 * costs PostgreSQL a bounded number of reads, not one each (review 29: 1,000 guesses were 1,000
 * reads on the edge's pool of 2).
 *
 * A secret missing from the hashes is decided by a read that started after its request arrived (a
 * secret an admin just created is then seen, whatever was read before): the one under way if it
 * started since, else the next one, scheduled `missRereadMs` after the last read started and shared
 * by every request waiting for it. So a flood of guesses still costs at most one read per
 * `missRereadMs` and process, and a miss waits at most `missRereadMs` plus the read, which is given up
 * after `readTimeoutMs` (the secret then counts as not live: the request gets its 429, it does not
 * hang). Until review 30 a secret used within `missRereadMs` of a read, or while a read that started
 * before its commit was under way, was refused with the limiter's Retry-After (~30 s).
 */
export function createLiveSecretCheck(
  pool: Pool,
  {
    maxAgeMs = 5_000,
    missRereadMs = 1_000,
    readTimeoutMs = 10_000,
    now = Date.now,
  }: { maxAgeMs?: number; missRereadMs?: number; readTimeoutMs?: number; now?: () => number } = {},
) {
  /** The newest hashes read, from the `applied`th read, finished at `readAt`. */
  let hashes: Set<string> | undefined;
  let applied = 0;
  let readAt = -Infinity;
  /** Reads started, the last at `startedAt`, and that one while it runs. */
  let started = 0;
  let startedAt = -Infinity;
  let reading: Promise<Set<string> | undefined> | undefined;
  /** The read scheduled for the misses waiting on it, before it starts. */
  let next: Promise<Set<string> | undefined> | undefined;

  /** A new read (undefined when given up after readTimeoutMs), kept unless a later one finished first. */
  const read = (): Promise<Set<string> | undefined> => {
    const seq = ++started;
    startedAt = now();
    const query = pool
      .query<{ secret_hash: string }>(`SELECT secret_hash FROM enrollment_secrets WHERE ${LIVE}`)
      .then(({ rows }) => {
        const live = new Set(rows.map((r) => r.secret_hash));
        if (seq > applied) [hashes, applied, readAt] = [live, seq, now()];
        return live;
      });
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<undefined>((resolve) => (timer = setTimeout(resolve, readTimeoutMs, undefined)));
    const bounded: Promise<Set<string> | undefined> = Promise.race([query, timeout]).finally(() => {
      clearTimeout(timer);
      if (reading === bounded) reading = undefined;
    });
    reading = bounded;
    return bounded;
  };

  /** A read that started after the `seen`th: shared, and at most one per missRereadMs. */
  const readAfter = (seen: number): Promise<Set<string> | undefined> => {
    if (reading && started > seen) return reading;
    next ??= new Promise<void>((resolve) =>
      setTimeout(resolve, Math.min(missRereadMs, Math.max(0, startedAt + missRereadMs - now()))),
    ).then(() => {
      next = undefined;
      return read();
    });
    return next;
  };

  return async (secret: string): Promise<boolean> => {
    const seen = started; // reads started before this request: they may predate its secret
    const hash = sha256Hex(secret);
    if (hashes?.has(hash) && now() - readAt < maxAgeMs) return true;
    return (await readAfter(seen))?.has(hash) ?? false;
  };
}

// Enrolled collectors know only their name and host; the target (this host's PostgreSQL, an
// empty password) is a placeholder the admin completes (collectors.update). Status stays `pending` until
// the first push (CONTRACT.md).
const INSERT_COLLECTOR_SQL = `
  INSERT INTO collectors (id, name, type, environment, group_id, host, port, database, username, password_encrypted,
                          agent_hostname, agent_version, enrollment_secret_id, status, description)
  VALUES ($1, $2, 'postgresql', $3, $4, $5, 5432, 'postgres', 'postgres', $6, $5, $7, $8, 'pending', $9)`;

const AUDIT_SQL = `
  INSERT INTO collector_audit_log (collector_id, entity_type, entity_id, action, details, actor_name, ip_address, user_agent, new_values)
  VALUES ($1::uuid, 'collector', $1::uuid::text, $2, $3, $4, $5::inet, $6, $7)`;

/** A wrong, expired, revoked or used-up enrollment secret (401): what the per-IP limiter counts. */
export class InvalidEnrollmentSecret extends AppError {
  constructor() {
    super('UNAUTHORIZED', 'enrollment secret is not valid (wrong, expired, revoked or used up)');
  }
}

export interface EnrollDeps {
  pool: Pool;
  tokens: CollectorTokens;
  box: SecretBox;
  /**
   * Adds an enrolled collector to Redis's known set, after its row committed (the admin's repair
   * denies a known id PostgreSQL lacks: a PostgreSQL restored from a backup older than the
   * enrollment). Never rejects: a failure is logged, and the admin's repair adds every id
   * PostgreSQL holds.
   */
  recordKnown?: (collectorId: string) => Promise<void>;
}

export interface RequestMeta {
  ip: string | null;
  userAgent: string | null;
}

/**
 * Enrollment (`POST /api/v1/collectors/register`): one transaction claims a use of the secret
 * (the conditional UPDATE is the check, so two racing enrollments cannot exceed `max_uses`),
 * then (the secret good) signs the token, creates the collector, records its token (hash + jti only) and writes the audit entry. Then,
 * committed, the collector's id goes into Redis's known set (`recordKnown`).
 */
export async function enrollCollector(
  deps: EnrollDeps,
  secret: string,
  input: EnrollRequest,
  meta: RequestMeta,
): Promise<{ id: string; issued: IssuedToken }> {
  if (!secret) throw new AppError('UNAUTHORIZED', 'missing X-Registration-Secret');
  const id = randomUUID();
  let issued: IssuedToken | undefined;
  try {
    await withTransaction(deps.pool, async (client) => {
      const { rows } = await client.query<{ id: string; name: string; group_id: string | null; environment: string }>(
        CLAIM_SECRET_SQL,
        [sha256Hex(secret)],
      );
      const enrollment = rows[0];
      if (!enrollment) throw new InvalidEnrollmentSecret();
      // Signed only once the secret is good: a wrong guess must not cost a JWT signature.
      issued = await deps.tokens.issue(id);
      await client.query(INSERT_COLLECTOR_SQL, [
        id,
        input.name,
        enrollment.environment,
        enrollment.group_id,
        input.hostname,
        deps.box.encrypt('', id),
        input.version ?? null,
        enrollment.id,
        `enrolled with secret "${enrollment.name}"`,
      ]);
      await recordIssuedToken(client, id, issued);
      await client.query(AUDIT_SQL, [
        id,
        'collector.registered',
        { via: 'enrollment', enrollment_secret_id: enrollment.id, enrollment_secret_name: enrollment.name },
        'enrollment',
        meta.ip,
        meta.userAgent,
        { name: input.name, hostname: input.hostname, version: input.version ?? null, environment: enrollment.environment },
      ]);
    });
  } catch (err) {
    if (isUniqueViolation(err, 'collectors_name_key'))
      throw new AppError('CONFLICT', `a collector named "${input.name}" already exists`);
    throw err;
  }
  // After the commit, never before: a repair that ran meanwhile would deny it.
  await deps.recordKnown?.(id);
  return { id, issued: issued! };
}

// Read in its own statement, after the lock: under READ COMMITTED a statement takes its snapshot
// when it starts, so a check inside the locking statement would not see a rotation, revocation,
// disable or delete that committed while it waited for the lock.
const REFRESH_STATE_SQL = `
  SELECT c.enabled, c.deleted_at IS NOT NULL AS deleted, t.jti IS NOT NULL AS token_known,
         t.revoked_at IS NOT NULL AS token_revoked
    FROM collectors c
    LEFT JOIN collector_tokens t ON t.jti = $2 AND t.collector_id = c.id
   WHERE c.id = $1`;

interface RefreshState {
  enabled: boolean;
  deleted: boolean;
  token_known: boolean;
  token_revoked: boolean;
}

/** The presenting token of a refresh: its collector and its jti (the edge's verified claims). */
export interface RefreshingToken {
  collectorId: string;
  jti: string;
}

/**
 * A new token for a collector whose token is still valid; the old one stays valid until it expires.
 * The edge's deny state lags a commit by the time its publish takes to arrive: a refresh with a
 * token an admin just rotated away or revoked, or of a collector just disabled or deleted, would
 * pass it and mint a live token. So, inside the transaction and after locking the collector's row
 * (the lock the admin's rotate, disable and delete take first, so they serialise with this), the
 * database is asked again: the presenting jti unrevoked, the collector enabled and not deleted.
 */
export async function refreshCollectorToken(
  deps: EnrollDeps,
  presenting: RefreshingToken,
  meta: RequestMeta,
): Promise<IssuedToken> {
  const { collectorId, jti } = presenting;
  const issued = await deps.tokens.issue(collectorId);
  await withTransaction(deps.pool, async (client) => {
    const { rowCount } = await client.query('SELECT 1 FROM collectors WHERE id = $1 FOR UPDATE', [collectorId]);
    if (!rowCount) throw new AppError('UNAUTHORIZED', 'collector was deleted');
    const { rows } = await client.query<RefreshState>(REFRESH_STATE_SQL, [collectorId, jti]);
    const state = rows[0];
    if (!state || state.deleted) throw new AppError('UNAUTHORIZED', 'collector was deleted');
    if (state.token_revoked) throw new AppError('UNAUTHORIZED', 'token was revoked');
    if (!state.token_known) throw new AppError('UNAUTHORIZED', 'token is not on record for this collector');
    if (!state.enabled) throw new AppError('COLLECTOR_DISABLED', 'collector is disabled');
    await recordIssuedToken(client, collectorId, issued);
    await client.query(AUDIT_SQL, [
      collectorId,
      'token_refreshed',
      { jti: issued.jti },
      'collector',
      meta.ip,
      meta.userAgent,
      null,
    ]);
  });
  return issued;
}
