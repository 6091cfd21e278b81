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
        // nothing at all for endWithoutBody(length).
        if (this.head) this.res.endWithoutBody();
        else this.res.end(body, this.bodyPending);
      });
    }
    this.onDone(this.aborted ? 0 : status);
  }

  json(status: number, value: unknown, headers?: Record<string, string>): void {
    this.send(status, JSON.stringify(value), headers);
  }

  error(code: ErrorCode, message: string, retryAfterSeconds?: number, headers?: Record<string, string>): void {
    const all = retryAfterSeconds ? { ...headers, 'retry-after': String(retryAfterSeconds) } : headers;
    this.json(ERROR_HTTP_STATUS[code], { error: { code, message } }, all);
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
