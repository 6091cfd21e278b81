import { createServer, type Server } from 'node:http';
import type { Registry } from 'prom-client';
import type { MetricsAuth } from '@pga/config';

export interface OpsServerOptions {
  registry: Registry;
  /**
   * Ready = started, not draining, and PostgreSQL (on readiness's own connection, not the pool) and
   * Redis answer within 2 s (readiness.ts).
   */
  ready: () => Promise<{ ok: boolean; reason?: string }>;
  /** METRICS_TOKEN's check of `/metrics` (only: /healthz and /readyz stay open); absent = open. */
  metricsAuth?: MetricsAuth;
}

/** /healthz (process alive), /readyz (dependencies reachable, not draining), /metrics (Prometheus). */
export function createOpsServer(o: OpsServerOptions): Server {
  return createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'application/json', allow: 'GET, HEAD' });
      res.end(JSON.stringify({ error: { code: 'METHOD_NOT_ALLOWED', message: 'use GET' } }));
      return;
    }
    if (url === '/healthz') {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}');
      return;
    }
    if (url === '/readyz') {
      void o.ready().then(
        (r) => {
          res.writeHead(r.ok ? 200 : 503, { 'content-type': 'application/json' });
          res.end(JSON.stringify(r.ok ? { status: 'ready' } : { status: 'unavailable', reason: r.reason }));
        },
        () => res.writeHead(503, { 'content-type': 'application/json' }).end('{"status":"unavailable"}'),
      );
      return;
    }
    if (url === '/metrics') {
      const refusal = o.metricsAuth?.check(req.headers.authorization);
      if (refusal) {
        res.writeHead(401, {
          'content-type': 'application/json',
          'cache-control': 'no-store',
          'www-authenticate': o.metricsAuth!.challenge(refusal),
        });
        res.end(req.method === 'HEAD' ? undefined : o.metricsAuth!.body(refusal));
        return;
      }
      void o.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': o.registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'not found' } }));
  });
}
