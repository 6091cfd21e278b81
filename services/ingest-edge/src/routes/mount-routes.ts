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
  wrongMethod: Handler;
  ops: ReturnType<typeof opsRoutes>;
}

/** The URL map of CONTRACT.md. A known path with another method answers 405, anything else 404. */
export function mountRoutes(app: TemplatedApp, r: EdgeRoutes): void {
  app
    .post('/api/v1/metrics/push', r.push)
    .post('/api/v1/collectors/register', r.register)
    .post('/api/v1/collectors/refresh-token', r.refresh)
    .post('/api/v1/collectors/:id/heartbeat', r.heartbeat)
    .get('/api/v1/collectors/:id/config', r.config)
    .get('/api/v1/config/:id', r.v3Config)
    .get('/healthz', r.ops.healthz)
    .get('/readyz', r.ops.readyz)
    .get('/metrics', r.ops.metrics);
  for (const path of [
    '/api/v1/metrics/push',
    '/api/v1/collectors/register',
    '/api/v1/collectors/refresh-token',
    '/api/v1/collectors/:id/heartbeat',
    '/api/v1/collectors/:id/config',
    '/api/v1/config/:id',
  ])
    app.any(path, r.wrongMethod);
  app.any('/*', r.notFound);
}
