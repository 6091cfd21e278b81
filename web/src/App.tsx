import { useEffect, useState } from 'react';

type Health = { state: 'checking' } | { state: 'ready' } | { state: 'not ready'; reason: string } | { state: 'unreachable' };

const label = (health: Health) =>
  health.state === 'ready' ? 'healthy' : health.state === 'not ready' ? `not ready: ${health.reason}` : health.state;

/** Shell of the admin UI; the feature pages arrive with the UI issue. */
export function App() {
  const [health, setHealth] = useState<Health>({ state: 'checking' });
  useEffect(() => {
    // /readyz, not /healthz: "healthy" only when the service's PostgreSQL and Redis answer too.
    fetch('/readyz')
      .then(async (res) => {
        if (res.ok) return setHealth({ state: 'ready' });
        const body = (await res.json().catch(() => ({}))) as { reason?: unknown };
        setHealth(typeof body.reason === 'string' ? { state: 'not ready', reason: body.reason } : { state: 'unreachable' });
      })
      .catch(() => setHealth({ state: 'unreachable' }));
  }, []);
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', margin: '2rem' }}>
      <h1>pgAnalytics Central</h1>
      <p>
        Admin service: <strong data-testid="health">{label(health)}</strong>
      </p>
    </main>
  );
}
