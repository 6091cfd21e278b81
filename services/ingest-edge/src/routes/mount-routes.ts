import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { opsRoutes } from '../ops/ops-routes';

type Handler = (res: HttpResponse, req: HttpRequest) => void;

export interface EdgeRoutes {
  push: Handler;
  heartbeat: Handler;
  config: Handler;
  v3Config: Handler;
  register: Handler;
  refresh: Handler;
  notFound: Handler;
  /** The 405 of a known path; `allow` is its methods, for the answer's `Allow` header. */
  wrongMethod: (allow: string) => Handler;
  ops: ReturnType<typeof opsRoutes>;
}

/**
 * The URL map of CONTRACT.md. A known path with another method answers 405 with `Allow` (RFC 9110
 * §15.5.6), anything else 404. Every GET path takes HEAD too; a HEAD request gets no body whatever
 * its answer (a body would be read as the start of the next answer on a keep-alive connection).
 */
export function mountRoutes(app: TemplatedApp, r: EdgeRoutes): void {
  const routes: ['post' | 'get', string, Handler][] = [
    ['post', '/api/v1/metrics/push', r.push],
    ['post', '/api/v1/collectors/register', r.register],
    ['post', '/api/v1/collectors/refresh-token', r.refresh],
    ['post', '/api/v1/collectors/:id/heartbeat', r.heartbeat],
    ['get', '/api/v1/collectors/:id/config', r.config],
    ['get', '/api/v1/config/:id', r.v3Config],
    ['get', '/healthz', r.ops.healthz],
    ['get', '/readyz', r.ops.readyz],
    ['get', '/metrics', r.ops.metrics],
  ];
  // HEAD wherever GET (RFC 9110 §9.3.2): the same handler, which answers it without the body.
  for (const [method, path, handler] of routes) {
    app[method](path, handler);
    if (method === 'get') app.head(path, handler);
  }
  // uWS prefers a route of the request's own method over `any`, whatever the order.
  for (const [method, path] of routes) app.any(path, r.wrongMethod(method === 'get' ? 'GET, HEAD' : 'POST'));
  app.any('/*', r.notFound);
}
