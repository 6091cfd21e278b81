import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError } from '@pga/contracts';
import type { Deps } from '../deps';
import { SESSION_COOKIE, readCookie } from '../auth/session-cookie';
import type { FoundSession } from '../auth/session-lookup';
import { holdUntilAnsweredOrGone, whileInProgress } from './request-hold';

const KiB = 1024;

/**
 * Largest request body of every procedure but collectors.bulkImport, whoever calls. The largest
 * legitimate input is a `collectors.register` (or `update`, `testConnection`) with a certificate at
 * its 64 KiB limit (SslCertificateSchema; its newlines escaped in JSON), a 1,000-character
 * description, 32 tags of 64 characters, host/database/username at 255 and a 512-character password:
 * 77 KB a call with the description's and password's characters at their longest JSON escapes,
 * 767 KB for a batch of 10
 * (MAX_BATCH_SIZE) — test/admin/request-body.test.ts sends that batch. Until 2026-12-07 every
 * procedure took ADMIN_MAX_BODY_BYTES (32 MiB by default, up to 512 MiB), read and parsed before the
 * session or the input schema was looked at: 60 anonymous logins with a 31 MiB username took the
 * service from 0.6 to 2 GB (authzrev F4).
 */
export const MAX_CALL_BODY_BYTES = 1024 * KiB;

/**
 * Largest request body without a session (no cookie, or one that is no live session's), and the
 * size up to which a body needs no session lookup and no share of the body budget. The only
 * procedures anyone may call are auth.login (a username of 255 and a password of 1,024 characters:
 * under 8 KiB at their longest JSON escapes), auth.logout and auth.me; everything else answers 401
 * anyway. A larger declared body without a session is answered 413 before a byte is read, a chunked
 * one as soon as it passes this. Until 2026-12-08 anonymous bodies of up to MAX_CALL_BODY_BYTES each
 * reserved their declared length from the budget before a byte arrived: 64 connections sending
 * headers only held all of it, and every admin's POST answered 503 (review33 F2).
 */
export const ANONYMOUS_BODY_BYTES = 64 * KiB;

/** The one procedure whose body may be larger (up to ADMIN_MAX_BODY_BYTES), for admins only. */
export const BULK_IMPORT = 'collectors.bulkImport';

/** Seconds a bulk import refused for want of a slot is told to wait (Retry-After). */
const SLOT_RETRY_SECONDS = 5;

/**
 * The procedures a /trpc path calls (`/trpc/a.b,c.d?batch=1`), as tRPC's standalone adapter and
 * resolveResponse read them (slashes trimmed, percent-decoded, split on commas).
 */
export function trpcCalls(pathname: string): string[] {
  const raw = pathname
    .replace(/^\/+|\/+$/g, '')
    .slice('trpc'.length)
    .replace(/^\/+/, '');
  try {
    return decodeURIComponent(raw).split(',');
  } catch {
    return [raw];
  }
}

/** A request that calls only collectors.bulkImport (once, or a batch of them). */
export const callsOnlyBulkImport = (pathname: string): boolean => trpcCalls(pathname).every((c) => c === BULK_IMPORT);

/** Content-Length as a number; undefined for a chunked body (Node's parser refuses a malformed one). */
function declaredLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length'];
  return header === undefined ? undefined : Number(header);
}

/**
 * At most `max` bulk-import bodies at once, each holding its slot from before its body is read until
 * its answer is sent: an import's memory (the body, its text, the parsed rows, the report) lives that
 * long, so admins' imports together hold at most `max` × ADMIN_MAX_BODY_BYTES of bodies (and a few
 * times that while they are parsed), however many are sent.
 */
export class BodySlots {
  private used = 0;
  constructor(readonly max: number) {}
  get inUse(): number {
    return this.used;
  }
  /** A release function, or undefined when every slot is taken. */
  tryAcquire(): (() => void) | undefined {
    if (this.used >= this.max) return undefined;
    this.used++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used--;
    };
  }
}

/** Seconds a request refused for want of body budget is told to wait (Retry-After). */
const BUDGET_RETRY_SECONDS = 2;

/**
 * The process's budget of request-body bytes (ADMIN_BODY_BUDGET_BYTES) for signed-in requests:
 * each body over ANONYMOUS_BODY_BYTES (or chunked) sent with a session, bulk imports holding a slot
 * excepted, reserves its declared length (a chunked one its limit) before a byte is read, and gives
 * it back when its answer is sent or its connection closes. A request that does not fit is refused
 * before its body is read; one admitted is never cut for the budget's sake. Each user's bodies
 * together may hold at most `perUser` of it (ADMIN_BODY_BUDGET_PER_USER_BYTES, all their sessions
 * counted together), so one user's slow uploads (or a stolen session's) leave the rest to others.
 * Until 2026-12-07 only each body was capped: N slow uploads held N MiB for up to the 300 s
 * requestTimeout, however many. Until 2026-12-08 every body reserved, whoever sent it, and bulk
 * imports too: 64 anonymous connections sending headers only, or two admins' imports, held all of
 * it (review33 F2, F3); and one signed-in user could hold all of it, every other admin's bodies over
 * 64 KiB answered 503 meanwhile.
 */
export class BodyBudget {
  private used = 0;
  private readonly byUser = new Map<string, number>();
  constructor(
    readonly max: number,
    readonly perUser: number,
  ) {}
  get inUse(): number {
    return this.used;
  }
  /** Bytes `userId`'s bodies hold. */
  heldBy(userId: string): number {
    return this.byUser.get(userId) ?? 0;
  }
  /**
   * A release function; or why `bytes` more for `userId` do not fit: `budget` when they would pass
   * the whole budget, else `user` when that user's share (a share of at least the budget never binds).
   */
  tryReserve(bytes: number, userId: string): (() => void) | 'user' | 'budget' {
    const mine = this.heldBy(userId);
    if (bytes > 0 && this.used + bytes > this.max) return 'budget';
    if (bytes > 0 && mine + bytes > this.perUser) return 'user';
    this.used += bytes;
    this.byUser.set(userId, mine + bytes);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
      const left = this.heldBy(userId) - bytes;
      if (left > 0) this.byUser.set(userId, left);
      else this.byUser.delete(userId);
    };
  }
}

/**
 * How long the session admitBody found for a request (before reading its body) stands for that
 * request's tRPC context (createHttpContext): a body that took longer to arrive has its session
 * looked up again, so a user disabled, re-roled or signed out during a slow upload is refused as
 * before; one that arrived in time costs one lookup, not two.
 */
export const ADMITTED_SESSION_REUSE_MS = 5000;

/** The session admitBody looked up for a request (undefined: none), and when. */
const admittedSessions = new WeakMap<IncomingMessage, { session: FoundSession | undefined; at: number }>();

/**
 * The session admitBody found for `req` (`{ session: undefined }`: it found none) when it looked it
 * up at most ADMITTED_SESSION_REUSE_MS ago; undefined when it did not look (or too long ago).
 */
export function admittedSession(req: IncomingMessage): { session: FoundSession | undefined } | undefined {
  const found = admittedSessions.get(req);
  if (!found || Date.now() - found.at > ADMITTED_SESSION_REUSE_MS) return undefined;
  return { session: found.session };
}

/**
 * A refused request's body still on its way is read and dropped for at most this long, then its
 * connection is closed: closed at once, the client still sending got a reset (EPIPE, ECONNRESET)
 * instead of the answer, as the edge found (ingest-edge http/route.ts LINGER_MS). Nothing of it is
 * kept; a client still sending after this loses the connection.
 */
const LINGER_MS = 5_000;

/**
 * Answers a /trpc request whose body was not (or not all) read. The rest of the body is dropped as it
 * arrives (a lingering close), never buffered.
 */
export function refuse(req: IncomingMessage, res: ServerResponse, error: AppError): void {
  if (res.headersSent || res.destroyed) return;
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (error.details.retryAfterSeconds) headers['retry-after'] = String(error.details.retryAfterSeconds);
  res.writeHead(error.httpStatus, headers).end(JSON.stringify(error.toBody()));
  if (req.complete) return;
  const socket = req.socket;
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  const stop = () => clearTimeout(timer);
  req.once('end', stop);
  socket.once('close', stop);
  req.resume(); // flowing with no 'data' listener: each chunk dropped
}

const tooLarge = (what: string, limit: number, setting: string) =>
  new AppError('PAYLOAD_TOO_LARGE', `request body ${what} is over the ${limit}-byte limit ${setting}`);

type Read = { text: string } | { tooLarge: true } | { timedOut: true } | undefined;

/**
 * Reads a request body of at most `limit` bytes into a string. `{ tooLarge }` as soon as more
 * arrived (a chunked body has no Content-Length to check first); `{ timedOut }` when no byte came
 * for `idleMs` (as nginx's client_body_timeout; what was read is dropped); undefined when the client
 * went away.
 */
function readBody(req: IncomingMessage, limit: number, idleMs: number): Promise<Read> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      chunks.length = 0;
      done({ timedOut: true });
    }, idleMs);
    const done = (result: Read) => {
      clearTimeout(timer);
      req.off('data', onData).off('end', onEnd).off('error', onGone).off('close', onGone);
      resolve(result);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        chunks.length = 0;
        return done({ tooLarge: true });
      }
      chunks.push(chunk);
      timer.refresh();
    };
    const onEnd = () => done({ text: Buffer.concat(chunks, size).toString('utf8') });
    const onGone = () => done(undefined);
    req.on('data', onData).on('end', onEnd).on('error', onGone).on('close', onGone);
  });
}

/**
 * Reads the body of a /trpc POST within its limit and hands it to tRPC (`req.body`, which tRPC's
 * adapter takes instead of reading the stream); true when tRPC may go on, false when this answered.
 *
 * A declared body of at most ANONYMOUS_BODY_BYTES (sign-in, most mutations) is read at once: no
 * session lookup, no share of the budget. A larger one (or a chunked one) has its session looked up
 * before a byte of it is read:
 * - no session: collectors.bulkImport → 401; anything else → 413 for a declared length over
 *   ANONYMOUS_BODY_BYTES, a chunked body read up to that and 413 past it, with no share of the budget;
 * - every procedure but collectors.bulkImport: MAX_CALL_BODY_BYTES, whoever calls (a larger
 *   declared length → 413 before any lookup);
 * - a request calling only collectors.bulkImport: ADMIN_MAX_BODY_BYTES, and with a body over
 *   MAX_CALL_BODY_BYTES (or a chunked one) only an admin's (else 403, over the limit 413); it then
 *   needs one of the `slots` (ADMIN_BULK_IMPORTS_AT_ONCE; all taken → 429 with Retry-After), which
 *   bound imports on their own: they take no share of the budget;
 * - any other signed-in body reserves its declared length (a chunked one its limit) in `budget`
 *   (ADMIN_BODY_BUDGET_BYTES; full → 503 with Retry-After, before reading), at most
 *   ADMIN_BODY_BUDGET_PER_USER_BYTES of it for one user's bodies together (past it → 429 with
 *   Retry-After, before reading).
 * A share and a slot are held until the answer is sent or the connection is gone. While reading, no
 * byte for ADMIN_BODY_TIMEOUT_MS → 408 REQUEST_TIMEOUT: a stalled sender holds nothing longer, a slow
 * but steady one (a large import on a slow link) gets through; Node's requestTimeout (300 s)
 * bounds the whole request.
 */
export async function admitBody(
  deps: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  slots: BodySlots,
  budget: BodyBudget,
): Promise<boolean> {
  const declared = declaredLength(req);
  const bulk = callsOnlyBulkImport(pathname);
  let limit = bulk ? deps.config.ADMIN_MAX_BODY_BYTES : MAX_CALL_BODY_BYTES;
  let setting = bulk ? `of ${BULK_IMPORT} (ADMIN_MAX_BODY_BYTES)` : `of every procedure but ${BULK_IMPORT}`;
  if (declared !== undefined && declared <= ANONYMOUS_BODY_BYTES) return read(deps, req, res, limit, setting);
  if (!bulk && declared !== undefined && declared > limit) {
    refuse(req, res, tooLarge(`of ${declared} bytes`, limit, setting));
    return false;
  }
  const sessionId = readCookie(req.headers.cookie, SESSION_COOKIE);
  let session;
  try {
    session = sessionId
      ? await whileInProgress(req, (signal) => deps.sessionLookup.lookup(sessionId, signal), 'lookup')
      : undefined;
  } catch (err) {
    // The session lookups' bound (503, Retry-After) as any request meets it; anything else too.
    refuse(
      req,
      res,
      err instanceof AppError ? err : new AppError('UNAVAILABLE', 'could not check the session; try again shortly'),
    );
    return false;
  }
  // The tRPC context takes it from here (admittedSession): until 2026-12-08 it looked it up again.
  admittedSessions.set(req, { session, at: Date.now() });
  if (!session) {
    if (bulk) {
      refuse(req, res, new AppError('UNAUTHORIZED', 'sign in first'));
      return false;
    }
    limit = ANONYMOUS_BODY_BYTES;
    setting = 'of a request without a session (sign in first)';
    if (declared !== undefined) {
      refuse(req, res, tooLarge(`of ${declared} bytes`, limit, setting));
      return false;
    }
    return read(deps, req, res, limit, setting); // chunked: cut at the limit, no share of the budget
  }
  const large = bulk && (declared === undefined || declared > MAX_CALL_BODY_BYTES);
  if (large && session.user.role !== 'admin') {
    refuse(req, res, new AppError('FORBIDDEN', 'this needs the admin role'));
    return false;
  }
  if (declared !== undefined && declared > limit) {
    refuse(req, res, tooLarge(`of ${declared} bytes`, limit, setting));
    return false;
  }
  if (large) {
    // Bounded by the slots (ADMIN_BULK_IMPORTS_AT_ONCE × ADMIN_MAX_BODY_BYTES), not the budget: two
    // imports at 32 MiB took the default 64 MiB and every other body got 503 (review33 F3).
    const release = slots.tryAcquire();
    if (!release) {
      const message = `${slots.max} bulk imports are running already (ADMIN_BULK_IMPORTS_AT_ONCE); send this one when one of them has finished`;
      refuse(req, res, new AppError('RATE_LIMITED', message, { retryAfterSeconds: SLOT_RETRY_SECONDS }));
      return false;
    }
    // Gone while its session was looked up: released at once.
    if (!holdUntilAnsweredOrGone(req, res, release)) return false;
    return read(deps, req, res, limit, setting);
  }
  // The body's bytes, reserved before it is read: a request that would pass the budget (or its
  // user's share of it) waits for nothing and holds nothing (503 / 429, Retry-After); one taken is
  // read to its end whatever comes next.
  const bytes = declared ?? limit;
  const release = budget.tryReserve(bytes, session.user.id);
  if (typeof release !== 'function') {
    const what = declared === undefined ? `a chunked body (reserved at its ${limit}-byte limit)` : `a ${declared}-byte body`;
    const refusal =
      release === 'user'
        ? new AppError(
            'RATE_LIMITED',
            `your requests hold ${budget.heldBy(session.user.id)} bytes of request bodies already; ${what} would pass ` +
              `ADMIN_BODY_BUDGET_PER_USER_BYTES (${budget.perUser}), one user's share of the service's request-body budget: ` +
              'send it when one of them has been answered',
            { retryAfterSeconds: BUDGET_RETRY_SECONDS },
          )
        : new AppError(
            'UNAVAILABLE',
            `the service holds ${budget.inUse} bytes of request bodies already; ${what} would pass ADMIN_BODY_BUDGET_BYTES ` +
              `(${budget.max}): send it again shortly`,
            { retryAfterSeconds: BUDGET_RETRY_SECONDS },
          );
    refuse(req, res, refusal);
    return false;
  }
  if (!holdUntilAnsweredOrGone(req, res, release)) return false;
  return read(deps, req, res, limit, setting);
}

/** Reads the body (readBody) and hands it to tRPC; answers 408 or 413 itself (false). */
async function read(deps: Deps, req: IncomingMessage, res: ServerResponse, limit: number, setting: string): Promise<boolean> {
  const idleMs = deps.config.ADMIN_BODY_TIMEOUT_MS;
  const body = await readBody(req, limit, idleMs);
  if (!body) return false;
  if ('timedOut' in body) {
    const message = `no byte of the request body arrived for ${idleMs} ms (ADMIN_BODY_TIMEOUT_MS)`;
    refuse(req, res, new AppError('REQUEST_TIMEOUT', message));
    return false;
  }
  if ('tooLarge' in body) {
    refuse(req, res, tooLarge('(chunked)', limit, setting));
    return false;
  }
  (req as IncomingMessage & { body?: string }).body = body.text;
  return true;
}
