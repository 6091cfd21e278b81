import { createServer, type Server } from 'node:http';
import { createHTTPHandler } from '@trpc/server/adapters/standalone';
import { unreadableForwardedWarning } from '@pga/config';
import { AppError } from '@pga/contracts';
import type { Deps } from '../deps';
import type { AppRouter } from '../routers/app-router';
import { createHttpContext } from './create-http-context';
import { csrfRefusal } from './csrf';
import { SessionInFlight, admitInFlight } from './in-flight';
import { readiness } from './readiness';
import { BodyBudget, BodySlots, MAX_CALL_BODY_BYTES, admitBody, refuse } from './request-body';
import { requestPathname } from './request-meta';
import { hostRefusalMessage, hostRefusalWarnings, hostRefusals, setSecurityHeaders } from './security-headers';
import { createStaticHandler } from './static-files';

/**
 * Calls in one tRPC batch (`?batch=1`); a longer batch is refused whole with 400. Unbounded, one
 * request could run thousands of procedures at once, and a batch of logins ran all its guesses
 * before any failure was counted (auth/login-limit.ts counts them atomically now). Clients set
 * httpBatchLink's `maxItems` to this (README); the web UI has no tRPC client yet.
 */
const MAX_BATCH_SIZE = 10;

/** The admin service's one HTTP server: /healthz, /readyz, /trpc/*, and the built web UI for everything else. */
export function createHttpServer(deps: Deps, appRouter: AppRouter, { webDistDir }: { webDistDir: string }): Server {
  const { logger, config } = deps;
  const onUnreadableForwarded = unreadableForwardedWarning(logger, config.TRUST_PROXY_HOPS);
  const trpc = createHTTPHandler({
    router: appRouter,
    basePath: '/trpc/',
    // A backstop only: admitBody reads every body first, within its limit, and hands tRPC the text.
    maxBodySize: Math.max(config.ADMIN_MAX_BODY_BYTES, MAX_CALL_BODY_BYTES),
    maxBatchSize: MAX_BATCH_SIZE,
    createContext: ({ req, res }) => createHttpContext(deps, req, res, onUnreadableForwarded),
    // RATE_LIMITED answers carry Retry-After (e.g. login lock-outs), like the edge's 429s.
    responseMeta({ errors }) {
      const retry = errors
        .map((e) => (e.cause instanceof AppError ? e.cause.details.retryAfterSeconds : undefined))
        .find(Boolean);
      return retry ? { headers: { 'retry-after': String(retry) } } : {};
    },
    onError({ error, path }) {
      if (error.code === 'INTERNAL_SERVER_ERROR') logger.error({ err: error.cause ?? error, path }, 'procedure failed');
    },
  });
  const bulkImportSlots = new BodySlots(config.ADMIN_BULK_IMPORTS_AT_ONCE);
  const sessionInFlight = new SessionInFlight(config.ADMIN_SESSION_MAX_IN_FLIGHT);
  const bodyBudget = new BodyBudget(config.ADMIN_BODY_BUDGET_BYTES, config.ADMIN_BODY_BUDGET_PER_USER_BYTES);
  const warnRefusedHost = hostRefusalWarnings(logger, config.ADMIN_ALLOWED_HOSTS);
  const serveUi = createStaticHandler(webDistDir);
  if (!serveUi) logger.warn({ webDistDir }, 'web UI not built; serving the API only');
  return createServer((req, res) => {
    setSecurityHeaders(res);
    // Routed on the parsed URL, as tRPC reads it: splitting req.url sent an absolute-form target
    // (`GET http://host/trpc/auth.me`) past the CSRF guard and tRPC to the static files.
    const pathname = requestPathname(req);
    if (pathname === undefined) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('unparsable request URL\n');
      req.resume();
      return;
    }
    // Probes (/healthz, /readyz: no data, no cookie) answer whatever the Host; the rest only to
    // the names this service is reached by (DNS rebinding, security-headers.ts hostRefusals).
    const refused =
      pathname === '/healthz' || pathname === '/readyz'
        ? []
        : hostRefusals(req, {
            trustProxy: config.TRUST_PROXY,
            hops: config.TRUST_PROXY_HOPS,
            allowedHosts: config.ADMIN_ALLOWED_HOSTS,
          });
    if (refused.length > 0) {
      warnRefusedHost(refused);
      res.writeHead(421, { 'content-type': 'text/plain; charset=utf-8' }).end(hostRefusalMessage(refused, config.TRUST_PROXY));
      req.resume();
      return;
    }
    if (pathname === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (pathname === '/readyz') {
      req.resume();
      void readiness(deps).then(({ status, body }) =>
        res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body)),
      );
      return;
    }
    if (pathname === '/trpc' || pathname.startsWith('/trpc/')) {
      const refusal = csrfRefusal(req, {
        trustProxy: config.TRUST_PROXY,
        hops: config.TRUST_PROXY_HOPS,
        allowedOrigins: config.ALLOWED_ORIGINS,
      });
      if (refusal) {
        res.writeHead(refusal.httpStatus, { 'content-type': 'application/json' }).end(JSON.stringify(refusal.toBody()));
        req.resume();
        return;
      }
      res.setHeader('cache-control', 'no-store');
      res.setHeader('x-content-type-options', 'nosniff');
      // At most ADMIN_SESSION_MAX_IN_FLIGHT requests of one session at once (429 beyond), before its
      // session lookup and its body (http/in-flight.ts).
      if (!admitInFlight(deps, req, res, pathname, sessionInFlight, (error) => refuse(req, res, error))) return;
      if (req.method === 'GET' || req.method === 'HEAD') {
        trpc(req, res);
        return;
      }
      // The body is read here, within the limit of the procedure it calls and, for a large bulk
      // import, only once its session is an admin's (http/request-body.ts); tRPC takes the text.
      admitBody(deps, req, res, pathname, bulkImportSlots, bodyBudget).then(
        (admitted) => {
          if (admitted) trpc(req, res);
        },
        (err: unknown) => {
          logger.error({ err, pathname }, 'reading a request body failed');
          refuse(req, res, new AppError('UNAVAILABLE', 'the service could not check this request; try again'));
        },
      );
      return;
    }
    if (serveUi) return serveUi(req, res);
    res.writeHead(503, { 'content-type': 'text/plain' }).end('The web UI is not built: run `npm run build -w @pga/web`.\n');
  });
}
