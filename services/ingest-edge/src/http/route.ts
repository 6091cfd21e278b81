import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { AppError } from '@pga/contracts';
import { isDatabaseUnavailable } from '@pga/db';
import { clientAddress, unreadableForwardedWarning } from '@pga/config';
import type { Logger, OutageLog } from '@pga/logger';
import type { EdgeMetrics } from '../ops/edge-metrics';
import { readBody, type BodyReader, type InflightBudget } from './read-body';
import { Reply } from './respond';

/** Refusals of bodies up to this declared size wait for the body, keeping the connection. */
const KEEP_ALIVE_DRAIN_BYTES = 1024 * 1024;
/**
 * A refusal of a larger body (up to the cap) waits this long at most for the rest of it (counted,
 * not kept). Answered at once and closed, its client was cut off mid-upload and got EPIPE or a reset
 * instead of the answer — a 429 or 503 without its Retry-After (a third of the 429s in the
 * large-pushes bench). What nginx calls a lingering close.
 */
const LINGER_MS = 10_000;

export interface RequestContext {
  reply: Reply;
  /** Lower-case header name → value ('' when absent), only those the route asked for. */
  headers: Record<string, string>;
  params: string[];
  /** Present when the route reads a body. */
  body?: BodyReader;
  /**
   * With `clientAddress`: the client's IP address (null when it is none), read before the handler
   * ran (uWS: `req` only lives until the handler returns, `res` until it is answered or aborted):
   * behind TRUST_PROXY X-Forwarded-For's entry TRUST_PROXY_HOPS from the right, else the TCP peer's.
   */
  client?: string | null;
}

export interface RouteOptions {
  /** Metric label of the route. */
  name: string;
  headers?: readonly string[];
  params?: number;
  /** Read a body of at most this many bytes. */
  maxBody?: number;
  /**
   * How a client authenticates here, for the WWW-Authenticate of a 401: `bearer` (RFC 6750: the
   * realm, and `error="invalid_token"` when a bearer token was sent; the route must read `authorization`)
   * or the enrollment's `X-Registration-Secret` header.
   */
  auth?: 'bearer' | 'registration-secret';
  /** Read the client's address into `ctx.client` (with TRUST_PROXY, from X-Forwarded-For). */
  clientAddress?: boolean;
}

/**
 * Headers the edge decides on (framing, identity, idempotency, decoding), by their usual spelling.
 * uWS.js's `getHeader` returns the first of several; any code behind it, or a proxy in front, may
 * take another — two different `Content-Length`s are request smuggling (RFC 9112 §6.3: 400). Sent
 * twice with different values, the request is refused; the same value twice is one value (RFC 9110
 * §8.6 allows that for Content-Length).
 */
const DECIDING_HEADERS: Record<string, string> = {
  'content-length': 'Content-Length',
  'content-type': 'Content-Type',
  'content-encoding': 'Content-Encoding',
  authorization: 'Authorization',
  'x-collector-id': 'X-Collector-ID',
  'idempotency-key': 'Idempotency-Key',
  'x-registration-secret': 'X-Registration-Secret',
};

/**
 * Headers that are one list however many times they are sent (RFC 9110 §5.3): several read as one,
 * joined with commas in order (X-Forwarded-For: proxies may add a header of their own rather than
 * append to the client's).
 */
const LIST_HEADERS: ReadonlySet<string> = new Set(['x-forwarded-for']);

/**
 * Reads the `wanted` headers into `headers` ('' when absent; the first of several, as `getHeader`,
 * but a LIST_HEADERS one joined), and returns the name of a deciding one sent twice with different
 * values.
 */
function readHeaders(req: HttpRequest, wanted: ReadonlySet<string>, headers: Record<string, string>): string | undefined {
  let conflict: string | undefined;
  req.forEach((name, value) => {
    if (!wanted.has(name)) return;
    const seen = headers[name];
    if (seen === undefined) headers[name] = value;
    else if (LIST_HEADERS.has(name)) headers[name] = `${seen},${value}`;
    else if (seen !== value && DECIDING_HEADERS[name]) conflict ??= DECIDING_HEADERS[name];
  });
  for (const name of wanted) headers[name] ??= '';
  return conflict;
}

/** The realm of every WWW-Authenticate challenge. */
const REALM = 'realm="pganalytics"';

function challenge(auth: RouteOptions['auth'], headers: Record<string, string>): string | undefined {
  if (auth === 'registration-secret') return `X-Registration-Secret ${REALM}`;
  // RFC 6750 §3.1: an error code only when a bearer token was sent (not for no or another scheme).
  if (auth === 'bearer')
    return /^bearer\s/i.test(headers.authorization ?? '') ? `Bearer ${REALM}, error="invalid_token"` : `Bearer ${REALM}`;
  return undefined;
}

/** Process-wide state every route shares: in-flight count for the drain, budget, metrics. */
export class RouteKit {
  inflight = 0;
  draining = false;
  private idle: (() => void)[] = [];
  /** Warns once about an X-Forwarded-For entry that is not an address (clientAddress). */
  private readonly onUnreadableForwarded: (entry: string) => void;

  constructor(
    readonly deps: {
      metrics: EdgeMetrics;
      budget: InflightBudget;
      logger: Logger;
      /** Where a request's PostgreSQL connection failure goes: one line per outage, not per request. */
      pgOutage: OutageLog;
      /** TRUST_PROXY and TRUST_PROXY_HOPS, for `ctx.client`; default: the TCP peer's address. */
      proxies?: { trustProxy: boolean; hops: number };
    },
  ) {
    this.onUnreadableForwarded = unreadableForwardedWarning(deps.logger, deps.proxies?.hops ?? 1);
  }

  /**
   * Wraps a handler with what uWS needs synchronously (onAborted, onData, header reads — `req` is
   * only valid until the handler returns) and with what every route does: metrics, errors as
   * `{"error":…}`, the budget released, the drain counter.
   */
  route(options: RouteOptions, handler: (ctx: RequestContext) => Promise<void> | void) {
    const { metrics, budget, logger, pgOutage } = this.deps;
    const proxies = { ...(this.deps.proxies ?? { trustProxy: false, hops: 1 }), onUnreadable: this.onUnreadableForwarded };
    const wanted = new Set(['content-length', ...(options.headers ?? [])]);
    // Without TRUST_PROXY the header is not even read: the client wrote it.
    if (options.clientAddress && proxies.trustProxy) wanted.add('x-forwarded-for');
    return (res: HttpResponse, req: HttpRequest): void => {
      const headers: Record<string, string> = {};
      const conflict = readHeaders(req, wanted, headers);
      const params: string[] = [];
      for (let i = 0; i < (options.params ?? 0); i++) params.push(req.getParameter(i) ?? '');
      const client = options.clientAddress
        ? clientAddress(Buffer.from(res.getRemoteAddressAsText()).toString(), headers['x-forwarded-for'], proxies)
        : undefined;
      this.inflight++;
      const reply = new Reply(res, (status) => {
        metrics.request(options.name, status);
      });
      reply.head = req.getMethod() === 'head';
      let reader: BodyReader | undefined;
      const length = headers['content-length'] ? Number(headers['content-length']) : NaN;
      const declared = Number.isFinite(length) ? length : undefined;
      res.onAborted(() => {
        reply.aborted = true;
        reader?.abort();
      });
      // A request refused for its headers (below) has its body left unread.
      if (options.maxBody !== undefined && !conflict) {
        reader = readBody(res, options.maxBody, budget, declared, () => reply.done || reply.aborted);
        reply.bodyPending = true;
        void reader.body.then(
          () => (reply.bodyPending = false),
          () => undefined,
        );
      }
      const finish = () => {
        if (reader) {
          reader.abort();
          metrics.bytesIn(options.name, reader.received());
          budget.give(reader.reserved());
        }
        if (!reply.done) reply.error('INTERNAL', 'no answer');
        this.inflight--;
        if (this.inflight === 0) for (const wake of this.idle.splice(0)) wake();
      };
      const fail = async (caught: unknown) => {
        // PostgreSQL unreachable or shutting down (enrollment, config, refresh): the client should
        // retry, not treat it as our bug.
        const err = isDatabaseUnavailable(caught)
          ? new AppError('UNAVAILABLE', 'database unavailable', { retryAfterSeconds: 5 })
          : caught;
        if (!(err instanceof AppError)) logger.error({ err, route: options.name }, 'request failed');
        // A client that hung up was refused nothing (its body "aborted" included): it counts as
        // status 0 in edge_http_requests_total, not as a rejection.
        else if (!reply.aborted) metrics.rejections.inc({ reason: err.details.reason ?? err.code });
        if (err !== caught) pgOutage.error(caught, 'PostgreSQL unavailable', { route: options.name });
        // A refusal (401, 429, …) of a body still arriving: let it finish, so the answer keeps the
        // connection alive and the client is not cut off mid-write — its bytes counted, not kept: a
        // client with no token trickling bodies held the in-flight budget until uWS's idle timeout,
        // and refused every collector's pushes. A body over KEEP_ALIVE_DRAIN_BYTES gets LINGER_MS
        // to finish (then the answer closes the connection); one over the cap or of unknown length
        // is answered at once and the connection closed.
        if (reader && !reader.complete() && !this.draining && declared !== undefined) {
          if (!(err instanceof AppError && err.code === 'PAYLOAD_TOO_LARGE')) {
            reader.discard();
            if (declared <= KEEP_ALIVE_DRAIN_BYTES) await reader.drained();
            else {
              let timer: NodeJS.Timeout | undefined;
              await Promise.race([reader.drained(), new Promise((r) => (timer = setTimeout(r, LINGER_MS)))]);
              clearTimeout(timer);
            }
          }
        }
        // All of it read (a body refused over the budget never resolves): the connection stays.
        if (reader?.complete() && !this.draining) reply.bodyPending = false;
        reply.fail(err, challenge(options.auth, headers));
      };
      if (conflict) {
        // Which one the client (or a proxy in front) meant is unknown — for Content-Length, where
        // this request's body ends: refused unread, and the connection closed (RFC 9112 §6.3).
        reply.bodyPending = true;
        const refuse = () =>
          void fail(new AppError('INVALID_PAYLOAD', `${conflict} header sent twice with different values`)).finally(finish);
        // uWS.js framed the body by the first Content-Length and, once this handler returns, reads
        // what follows it as the next request in the same pass: answered at once, a request smuggled
        // there was served too. Answered on the next turn of the loop, such a request finds this one
        // unanswered and uWS.js closes the connection, serving neither (see "HTTP pipelining"). Every
        // conflict waits so: the one named may be another header's, with two Content-Lengths as well.
        setImmediate(refuse);
        return;
      }
      if (this.draining) {
        reply.bodyPending = true; // close the connection: this process is going away
        void fail(new AppError('UNAVAILABLE', 'edge is shutting down', { retryAfterSeconds: 1 })).finally(finish);
        return;
      }
      let result: Promise<void> | void;
      try {
        result = handler({
          reply,
          headers,
          params,
          ...(reader ? { body: reader } : {}),
          ...(client !== undefined ? { client } : {}),
        });
      } catch (err) {
        void fail(err).finally(finish);
        return;
      }
      if (result) void result.catch(fail).finally(finish);
      else finish();
    };
  }

  /** Resolves when no request is in flight, or after `timeoutMs`. */
  whenIdle(timeoutMs: number): Promise<void> {
    if (this.inflight === 0) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, timeoutMs);
      this.idle.push(() => (clearTimeout(timer), resolve()));
    });
  }
}
