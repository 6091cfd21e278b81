import type { Deps } from '../deps';

/** How long /readyz waits for each dependency's answer. */
export const READY_TIMEOUT_MS = 2000;

const answers = (work: Promise<unknown>): Promise<boolean> =>
  new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), READY_TIMEOUT_MS);
    work.then(
      () => (clearTimeout(timer), resolve(true)),
      () => (clearTimeout(timer), resolve(false)),
    );
  });

/**
 * `/readyz`: whether the admin service can do its work, not only that its process runs (`/healthz`):
 * PostgreSQL answers `SELECT 1` and Redis a `PING`, each within READY_TIMEOUT_MS. The reasons name
 * the dependency only (no address or error text: the answer is not authenticated).
 */
export async function readiness(deps: Pick<Deps, 'pool' | 'redis'>): Promise<{ status: number; body: object }> {
  const [postgres, redis] = await Promise.all([answers(deps.pool.query('SELECT 1')), answers(deps.redis.ping())]);
  const reasons = [...(postgres ? [] : ['PostgreSQL not answering']), ...(redis ? [] : ['Redis not answering'])];
  return reasons.length === 0
    ? { status: 200, body: { status: 'ready' } }
    : { status: 503, body: { status: 'not ready', reason: reasons.join('; ') } };
}
