import type { HttpResponse } from 'uWebSockets.js';
import { AppError, ERROR_HTTP_STATUS, type ErrorCode } from '@pga/contracts';

const STATUS_TEXT: Record<number, string> = {
  200: '200 OK',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

/**
 * Ends a (small) answer, or closes the connection instead when earlier answers on it are still
 * unsent. A client that pipelines requests and never reads the answers otherwise had uWS.js keep
 * every further answer in memory — 60–80 MB per connection in the ~20 s before its idle timeout,
 * without a token (`/healthz`, or 401s). A client that reads has nothing unsent left when its next
 * request arrives (an answer is well under the kernel's send buffer), so it never sees this.
 * `tryEnd` writes nothing when the socket still holds unsent bytes; the connection is closed then.
 */
export function endOrClose(res: HttpResponse, body: string): void {
  const bytes = Buffer.byteLength(body);
  // A larger answer may fill the send buffer of a client that reads: ended whatever is pending.
  if (bytes > SMALL_ANSWER_BYTES) {
    res.end(body);
    return;
  }
  const [ok] = res.tryEnd(body, bytes);
  if (!ok) res.close();
}

/**
 * The random source of `spreadRetryAfter` (tests pin `next`). A 503 says something every collector
 * meets at once — Redis unreachable or over its memory budget, the edge over its own, draining, or
 * PostgreSQL away — so the same `Retry-After` for all of them brought the whole fleet back in the
 * same second, and an agent that waits exactly what it is told (pganalytics-v3's) kept retrying in
 * step for the whole outage.
 */
export const retryAfterRandom = { next: Math.random };

/**
 * The `Retry-After` of a 503: whole seconds drawn uniformly from [seconds, 2 × seconds] (1 → 1 or 2,
 * 5 → 5 … 10, 60 → 60 … 120): never sooner than the cause asks, spread over as long again. A 429's
 * (one collector's own rate, bytes or quota) is exact: it is that collector's, not the fleet's.
 */
export function spreadRetryAfter(seconds: number, random: () => number = retryAfterRandom.next): number {
  return seconds + Math.min(seconds, Math.floor(random() * (seconds + 1)));
}

/** uWS.js's cork buffer: an answer up to this size is written in one piece with its headers. */
const SMALL_ANSWER_BYTES = 16 * 1024;

/**
 * One request's answer side. uWS forbids touching `res` after `onAborted` fired, so every write goes
 * through here: it checks the flag, writes corked (one syscall), and records the status for metrics.
 */
export class Reply {
  aborted = false;
  done = false;
  status = 0;
  /** Set when the request body is still arriving: the connection is closed after answering. */
  bodyPending = false;
  /** A HEAD request: the answer's status and headers without its body (RFC 9110 §9.3.2). */
  head = false;
  constructor(
    readonly res: HttpResponse,
    private readonly onDone: (status: number) => void,
  ) {}

  send(status: number, body: string, headers?: Record<string, string>, contentType = 'application/json'): void {
    if (this.done) return;
    this.done = true;
    this.status = status;
    if (!this.aborted) {
      this.res.cork(() => {
        this.res.writeStatus(STATUS_TEXT[status] ?? String(status)).writeHeader('content-type', contentType);
        if (headers) for (const k in headers) this.res.writeHeader(k, headers[k]!);
        // Answering before the body is fully read (auth failure, cap exceeded): close, so the rest
        // of the body is never taken for the next request on this connection.
        // No Content-Length with it (RFC 9110 §8.6 allows that for HEAD): this uWS.js build writes
        // nothing at all for endWithoutBody(length). (Nor can it tell whether the answer went out:
        // see the edge README on pipelined HEADs.)
        if (this.head) this.res.endWithoutBody();
        else if (this.bodyPending) this.res.end(body, true);
        else endOrClose(this.res, body);
      });
    }
    this.onDone(this.aborted ? 0 : status);
  }

  json(status: number, value: unknown, headers?: Record<string, string>): void {
    this.send(status, JSON.stringify(value), headers);
  }

  error(code: ErrorCode, message: string, retryAfterSeconds?: number, headers?: Record<string, string>): void {
    const status = ERROR_HTTP_STATUS[code];
    const wait = retryAfterSeconds && status === 503 ? spreadRetryAfter(retryAfterSeconds) : retryAfterSeconds;
    const all = wait ? { ...headers, 'retry-after': String(wait) } : headers;
    this.json(status, { error: { code, message } }, all);
  }

  /**
   * Answers an AppError with its code; anything else as a generic 500 (never a stack trace). A 401
   * carries `challenge` as its WWW-Authenticate (RFC 9110 §11.6.1: a 401 names the scheme to use),
   * a 405 its `allow` (§15.5.6).
   */
  fail(err: unknown, challenge?: string): void {
    if (!(err instanceof AppError)) return this.error('INTERNAL', 'internal error');
    const headers: Record<string, string> = {};
    if (challenge && ERROR_HTTP_STATUS[err.code] === 401) headers['www-authenticate'] = challenge;
    if (err.details.allow) headers.allow = err.details.allow;
    this.error(err.code, err.message, err.details.retryAfterSeconds, headers);
  }
}
