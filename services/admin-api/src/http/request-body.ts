import type { IncomingMessage, ServerResponse } from 'node:http';
import { AppError } from '@pga/contracts';
import type { Deps } from '../deps';
import { SESSION_COOKIE, readCookie } from '../auth/session-cookie';

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
 * The process's budget of request-body bytes (ADMIN_BODY_BUDGET_BYTES): each admitted body reserves
 * its declared length (a chunked one its limit) before a byte is read, and gives it back when its
 * answer is sent or its connection closes. Until 2026-12-07 only each body was capped (1 MiB, and
 * ADMIN_BULK_IMPORTS_AT_ONCE × ADMIN_MAX_BODY_BYTES for imports): N slow uploads held N MiB for up to
 * the 300 s requestTimeout, however many. A request that does not fit is refused before its body is
 * read; one admitted is never cut for the budget's sake.
 */
export class BodyBudget {
  private used = 0;
  constructor(readonly max: number) {}
  get inUse(): number {
    return this.used;
  }
  /** A release function, or undefined when `bytes` more would pass the budget. */
  tryReserve(bytes: number): (() => void) | undefined {
    if (bytes > 0 && this.used + bytes > this.max) return undefined;
    this.used += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.used -= bytes;
    };
  }
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
 * arrived (a chunked body has no Content-Length to check first); `{ timedOut }` when it had not all
 * arrived after `timeoutMs` (what was read is dropped); undefined when the client went away.
 */
function readBody(req: IncomingMessage, limit: number, timeoutMs: number): Promise<Read> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      chunks.length = 0;
      done({ timedOut: true });
    }, timeoutMs);
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
 * Every procedure but collectors.bulkImport: MAX_CALL_BODY_BYTES, whoever calls. A request calling
 * only collectors.bulkImport: ADMIN_MAX_BODY_BYTES, and with a body over MAX_CALL_BODY_BYTES (or a
 * chunked one) its session is looked up before a byte of the body is read: no session → 401, not
 * an admin → 403; then it needs one of the `slots` (ADMIN_BULK_IMPORTS_AT_ONCE; all taken → 429
 * with Retry-After). A declared length over the limit is refused with 413 before reading, a chunked
 * body as soon as it passes the limit. Then its bytes are reserved in `budget` (ADMIN_BODY_BUDGET_BYTES;
 * full → 503 with Retry-After, before reading), and the body must arrive within ADMIN_BODY_TIMEOUT_MS
 * of the request's admission (408 REQUEST_TIMEOUT otherwise: a slow sender holds its reservation no
 * longer).
 */
export async function admitBody(
  deps: Deps,
  req: IncomingMessage,
  res: ServerResponse,
  pathname: string,
  slots: BodySlots,
  budget: BodyBudget,
): Promise<boolean> {
  const admittedAt = Date.now();
  const declared = declaredLength(req);
  const bulk = callsOnlyBulkImport(pathname);
  const limit = bulk ? deps.config.ADMIN_MAX_BODY_BYTES : MAX_CALL_BODY_BYTES;
  const setting = bulk ? `of ${BULK_IMPORT} (ADMIN_MAX_BODY_BYTES)` : `of every procedure but ${BULK_IMPORT}`;
  const large = bulk && (declared === undefined || declared > MAX_CALL_BODY_BYTES);
  if (large) {
    const sessionId = readCookie(req.headers.cookie, SESSION_COOKIE);
    let session;
    try {
      session = sessionId ? await deps.sessionLookup.lookup(sessionId) : undefined;
    } catch (err) {
      // The session lookups' bound (503, Retry-After) as any request meets it; anything else too.
      refuse(
        req,
        res,
        err instanceof AppError ? err : new AppError('UNAVAILABLE', 'could not check the session; try again shortly'),
      );
      return false;
    }
    if (!session) {
      refuse(req, res, new AppError('UNAUTHORIZED', 'sign in first'));
      return false;
    }
    if (session.user.role !== 'admin') {
      refuse(req, res, new AppError('FORBIDDEN', 'this needs the admin role'));
      return false;
    }
  }
  if (declared !== undefined && declared > limit) {
    refuse(req, res, tooLarge(`of ${declared} bytes`, limit, setting));
    return false;
  }
  if (large) {
    const release = slots.tryAcquire();
    if (!release) {
      const message = `${slots.max} bulk imports are running already (ADMIN_BULK_IMPORTS_AT_ONCE); send this one when one of them has finished`;
      refuse(req, res, new AppError('RATE_LIMITED', message, { retryAfterSeconds: SLOT_RETRY_SECONDS }));
      return false;
    }
    if (req.socket.destroyed) {
      release(); // gone while its session was looked up: 'close' was emitted already
      return false;
    }
    res.once('close', release);
  }
  // The body's bytes, reserved before it is read: a request that would pass the budget waits for
  // nothing and holds nothing (503, Retry-After); one taken is read to its end whatever comes next.
  const reserved = declared ?? limit;
  const release = budget.tryReserve(reserved);
  if (!release) {
    const what = declared === undefined ? `a chunked body (reserved at its ${limit}-byte limit)` : `a ${declared}-byte body`;
    const message =
      `the service holds ${budget.inUse} bytes of request bodies already; ${what} would pass ADMIN_BODY_BUDGET_BYTES ` +
      `(${budget.max}): send it again shortly`;
    refuse(req, res, new AppError('UNAVAILABLE', message, { retryAfterSeconds: BUDGET_RETRY_SECONDS }));
    return false;
  }
  if (req.socket.destroyed) {
    release();
    return false;
  }
  res.once('close', release);
  const timeoutMs = deps.config.ADMIN_BODY_TIMEOUT_MS;
  const read = await readBody(req, limit, Math.max(0, admittedAt + timeoutMs - Date.now()));
  if (!read) return false;
  if ('timedOut' in read) {
    const message = `the request body did not arrive within ${timeoutMs} ms (ADMIN_BODY_TIMEOUT_MS)`;
    refuse(req, res, new AppError('REQUEST_TIMEOUT', message));
    return false;
  }
  if ('tooLarge' in read) {
    refuse(req, res, tooLarge('(chunked)', limit, setting));
    return false;
  }
  (req as IncomingMessage & { body?: string }).body = read.text;
  return true;
}
