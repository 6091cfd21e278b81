import { limitKey } from '@pga/config';
import { AppError, EnrollRequestSchema } from '@pga/contracts';
import { FailureLimiter, RateLimiter } from '../auth/rate-limiter';
import type { Authenticate } from '../auth/authenticate';
import type { RequestContext } from '../http/route';
import {
  enrollCollector,
  createLiveSecretCheck,
  InvalidEnrollmentSecret,
  refreshCollectorToken,
  type EnrollDeps,
  type RequestMeta,
} from './enroll';
import { readJson } from './read-json';

export const SMALL_BODY = 64 * 1024;

/**
 * The client's address (the route's `clientAddress`: behind TRUST_PROXY the X-Forwarded-For entry
 * our load balancers wrote, else the TCP peer's) and User-Agent, for the failure limit and the audit entry.
 */
function requestMeta({ client, headers }: RequestContext): RequestMeta {
  return { ip: client ?? null, userAgent: headers['user-agent']?.slice(0, 500) || null };
}

/**
 * Failed enrollments (a wrong, expired, revoked or used-up secret) per client IP (an IPv6 one's /64) and process: a
 * burst of 10, then one more every 30 s; past them the IP gets 429 `RATE_LIMITED` with Retry-After
 * until its bucket refills — unless its secret is a live one (checked against the live secrets'
 * hashes, read at most every 5 s; a secret not among them waits, at most a second and the read, for
 * a read started after its request, so a secret an admin just created passes: createLiveSecretCheck):
 * many collectors can share an address (a proxy, a load balancer, a NAT), and wrong secrets from
 * some must not lock the others out. CONTRACT.md lists 401 and 400 for enrollment, and 429 only as
 * the per-collector limit: a collector with a good secret never sees it; only wrong, expired,
 * revoked or used-up secrets from a limited address do. Each guess cost a transaction (and,
 * before, a JWT signature); past the limit, at most one read per second whatever the flood.
 */
export const ENROLL_FAILURE_BURST = 10;
export const ENROLL_FAILURES_PER_SECOND = 1 / 30;

/** Why an enrollment was refused, for `edge_enrollment_failures_total{reason}`. */
export type EnrollFailureReason = 'missing_secret' | 'invalid_secret' | 'rate_limited';

/** `POST /api/v1/collectors/register` (CONTRACT.md enrollment). */
export function createEnrollHandler(
  deps: EnrollDeps & {
    failures?: FailureLimiter;
    onFailure?: (reason: EnrollFailureReason) => void;
    isLiveSecret?: (secret: string) => Promise<boolean>;
  },
) {
  const failures = deps.failures ?? new FailureLimiter(ENROLL_FAILURES_PER_SECOND, ENROLL_FAILURE_BURST);
  const isLive = deps.isLiveSecret ?? createLiveSecretCheck(deps.pool);
  const failed = (reason: EnrollFailureReason) => deps.onFailure?.(reason);
  return async (ctx: RequestContext): Promise<void> => {
    // A missing secret is a 401 before the body is read or judged (CONTRACT.md).
    const secret = ctx.headers['x-registration-secret'];
    if (!secret) {
      failed('missing_secret');
      throw new AppError('UNAUTHORIZED', 'missing X-Registration-Secret');
    }
    const meta = requestMeta(ctx);
    // Connections whose address cannot be read share one bucket: they cannot escape the limit. An
    // IPv6 client is its /64 (limitKey): it holds all of it.
    const client = meta.ip ? limitKey(meta.ip) : 'unknown';
    const wait = failures.wait(client);
    // A limited address still enrolls with a live secret: only its wrong guesses wait.
    if (wait > 0 && !(await isLive(secret))) {
      failed('rate_limited');
      throw new AppError('RATE_LIMITED', 'too many failed enrollments from this address', { retryAfterSeconds: wait });
    }
    const input = await readJson(await ctx.body!.body, ctx.headers['content-encoding']!, SMALL_BODY, EnrollRequestSchema);
    let enrolled: Awaited<ReturnType<typeof enrollCollector>>;
    try {
      enrolled = await enrollCollector(deps, secret, input, meta);
    } catch (err) {
      if (err instanceof InvalidEnrollmentSecret) {
        failures.fail(client);
        failed('invalid_secret');
      }
      throw err;
    }
    const { id, issued } = enrolled;
    ctx.reply.json(200, {
      collector_id: id,
      token: issued.token,
      expires_at: issued.expiresAt.toISOString(),
      certificate: '',
      private_key: '',
    });
  };
}

/**
 * Token refreshes per collector and process: a burst of 5, then one a minute. A collector refreshes
 * a token that lives for days; without a limit one valid token could mint tokens (a row and an
 * audit entry each) as fast as it can ask.
 */
export const REFRESH_BURST = 5;
export const REFRESH_PER_SECOND = 1 / 60;

/** `POST /api/v1/collectors/refresh-token`: the body may be empty or chunked and is ignored. */
export function createRefreshHandler(deps: EnrollDeps & { authenticate: Authenticate }) {
  const limiter = new RateLimiter(REFRESH_PER_SECOND, REFRESH_BURST);
  return async (ctx: RequestContext): Promise<void> => {
    const auth = await deps.authenticate({
      authorization: ctx.headers.authorization!,
      collectorId: ctx.headers['x-collector-id']!,
    });
    const wait = limiter.take(auth.collectorId);
    if (wait > 0) throw new AppError('RATE_LIMITED', 'too many token refreshes for this collector', { retryAfterSeconds: wait });
    await ctx.body!.body;
    deps.authenticate.recheck(auth);
    const issued = await refreshCollectorToken(deps, auth, requestMeta(ctx));
    ctx.reply.json(200, { token: issued.token, expires_at: issued.expiresAt.toISOString() });
  };
}
