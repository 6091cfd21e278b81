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

/** `pid` and `processes` of a JSON answer such as the edge's /readyz (`pid` alone in /healthz). */
function describedProcess(body: string): { pid?: number; processes?: number } {
  try {
    const { pid, processes } = JSON.parse(body) as { pid?: unknown; processes?: unknown };
    return {
      ...(typeof pid === 'number' ? { pid } : {}),
      ...(typeof processes === 'number' ? { processes } : {}),
    };
  } catch {
    return {};
  }
}

/** The `pid` of a JSON answer such as the edge's /healthz and /readyz, or undefined. */
export const answeringPid = (body: string): number | undefined => describedProcess(body).pid;

/**
 * Waits until `pathname` answered 200 on port `port` from every process serving it: as many
 * distinct pids as the answers' `processes` says (the edge's /readyz), or one answer when they do
 * not say. `check` may throw GiveUp to end the wait (the server exited).
 */
export async function waitForProcesses(
  port: number,
  pathname: string,
  { timeoutMs = 30_000, check }: { timeoutMs?: number; check?: () => void } = {},
): Promise<void> {
  const seen = new Set<number>();
  let expected = 1;
  await waitFor(
    `every process answering ${pathname} on port ${port}`,
    async () => {
      check?.();
      const res = await freshGet(port, pathname);
      if (res.status !== 200) return false;
      const { pid = -1, processes = 1 } = describedProcess(res.body);
      seen.add(pid);
      expected = Math.max(expected, processes);
      return seen.size >= expected;
    },
    timeoutMs,
    25,
  );
}
