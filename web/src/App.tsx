import { useEffect, useState } from 'react';

type Health = 'checking' | 'ok' | 'unreachable';

/** Shell of the admin UI; the feature pages arrive with the UI issue. */
export function App() {
  const [health, setHealth] = useState<Health>('checking');
  useEffect(() => {
    fetch('/healthz')
      .then((res) => setHealth(res.ok ? 'ok' : 'unreachable'))
      .catch(() => setHealth('unreachable'));
  }, []);
  return (
    <main style={{ fontFamily: 'system-ui, sans-serif', margin: '2rem' }}>
      <h1>pgAnalytics Central</h1>
      <p>
        Admin service: <strong data-testid="health">{health === 'ok' ? 'healthy' : health}</strong>
      </p>
    </main>
  );
}
