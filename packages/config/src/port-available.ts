import { createServer } from 'node:net';

/**
 * Whether nothing listens on `host:port`: a plain bind (no SO_REUSEPORT, not shared with a
 * cluster), which any listener refuses — also one that shares its port with SO_REUSEPORT, as the
 * ingest edge's processes do. A server about to listen with SO_REUSEPORT asks this first, so that it
 * does not silently join another program's (another install's) port. Port 0 is always available.
 */
export function portAvailable(host: string, port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(true);
  return new Promise((resolve) => {
    const probe = createServer();
    probe.unref();
    probe.once('error', () => resolve(false));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}
