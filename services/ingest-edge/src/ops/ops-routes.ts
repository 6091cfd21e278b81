import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import type { MetricsAuth } from '@pga/config';
import { endOrClose } from '../http/respond';

export interface OpsDeps {
  isReady(): { ready: boolean; reason?: string };
  /** Processes serving the port (EDGE_PROCESSES), told in /readyz so a waiter knows how many to expect. */
  processes: number;
  metricsText(): Promise<string>;
  metricsContentType: string;
  /**
   * METRICS_TOKEN's check of `/metrics` (and of nothing else: /healthz and /readyz stay open, and
   * no collector route reads it). Absent or without tokens: /metrics is open.
   */
  metricsAuth?: MetricsAuth;
}

/**
 * Writes the answer; to a HEAD request its status and headers only. Small answers (health) close a
 * connection whose earlier answers are still unsent (`endOrClose`); `/metrics` is large enough to
 * fill the send buffer of a client that reads, so it is ended whatever is pending.
 */
function write(
  res: HttpResponse,
  status: string,
  contentType: string,
  body: string,
  head: boolean,
  large = false,
  challenge?: string,
): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', contentType).writeHeader('cache-control', 'no-store');
    if (challenge) res.writeHeader('www-authenticate', challenge);
    if (head)
      res.endWithoutBody(); // no Content-Length: see Reply.send
    else if (large) res.end(body);
    else endOrClose(res, body);
  });
}

const isHead = (req: HttpRequest) => req.getMethod() === 'head';

/** `/healthz` (process alive), `/readyz` (queue reachable, deny state loaded, not draining), `/metrics`. */
export function opsRoutes(deps: OpsDeps) {
  return {
    healthz(res: HttpResponse, req: HttpRequest): void {
      write(res, '200 OK', 'application/json', JSON.stringify({ status: 'ok', pid: process.pid }), isHead(req));
    },
    readyz(res: HttpResponse, req: HttpRequest): void {
      const { ready, reason } = deps.isReady();
      // Which process of a multi-process edge answered (as in /healthz), and how many there are.
      const [status, body] = ready
        ? ['200 OK', { status: 'ready' }]
        : ['503 Service Unavailable', { status: 'not ready', reason }];
      write(
        res,
        status,
        'application/json',
        JSON.stringify({ ...body, pid: process.pid, processes: deps.processes }),
        isHead(req),
      );
    },
    metrics(res: HttpResponse, req: HttpRequest): void {
      const head = isHead(req);
      // Read only with a token configured: without one, this route is what it always was.
      const refusal = deps.metricsAuth?.check(req.getHeader('authorization'));
      if (refusal) {
        const auth = deps.metricsAuth!;
        write(res, '401 Unauthorized', 'application/json', auth.body(refusal), head, false, auth.challenge(refusal));
        return;
      }
      let aborted = false;
      res.onAborted(() => (aborted = true));
      deps.metricsText().then(
        (text) => !aborted && write(res, '200 OK', deps.metricsContentType, text, head, true),
        () => !aborted && write(res, '500 Internal Server Error', 'text/plain', 'metrics unavailable\n', head),
      );
    },
  };
}
