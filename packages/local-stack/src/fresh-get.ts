import http from 'node:http';
import { waitFor } from './wait-for';

/**
 * A GET on a connection of its own (no keep-alive pool), so that with SO_REUSEPORT the kernel may
 * hand it to any process listening on the port. Rejects at once when nothing listens.
 */
export function freshGet(port: number, pathname: string, timeoutMs = 5000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: pathname, agent: false, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${pathname} timed out after ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** The `pid` of a JSON answer such as the edge's /healthz and /readyz, or undefined. */
export function answeringPid(body: string): number | undefined {
  try {
    const pid = (JSON.parse(body) as { pid?: unknown }).pid;
    return typeof pid === 'number' ? pid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Waits until `processes` distinct processes sharing `port` answered `pathname` with 200 (each
 * answer naming its pid), e.g. every process of a multi-process edge ready. `check` may throw
 * GiveUp to end the wait (the server exited).
 */
export async function waitForProcesses(
  port: number,
  pathname: string,
  processes: number,
  { timeoutMs = 30_000, check }: { timeoutMs?: number; check?: () => void } = {},
): Promise<void> {
  const seen = new Set<number>();
  await waitFor(
    `${processes} process(es) answering ${pathname} on port ${port}`,
    async () => {
      check?.();
      const res = await freshGet(port, pathname);
      const pid = answeringPid(res.body);
      if (res.status === 200) seen.add(pid ?? -1);
      return seen.size >= processes;
    },
    timeoutMs,
    25,
  );
}
