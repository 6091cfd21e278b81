import { createServer } from 'node:net';

/**
 * Whether nothing listens on `host:port`: a plain bind (no SO_REUSEPORT, not shared with a
 * cluster), which any listener refuses — also one that shares its port with SO_REUSEPORT, as the
 * ingest edge's processes do. A server about to listen with SO_REUSEPORT asks this first, so that it
 * does not silently join another program's (another install's) port. Port 0 is always available.
 * Rejects, naming the error, when the address cannot be listened on for another reason.
 */
export function portAvailable(host: string, port: number): Promise<boolean> {
  if (port === 0) return Promise.resolve(true);
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    // In use: false. Anything else (an address this host does not have, a privileged port) is not
    // "in use" and is said as it is.
    probe.once('error', (err: NodeJS.ErrnoException) =>
      err.code === 'EADDRINUSE'
        ? resolve(false)
        : reject(new Error(`cannot listen on ${host}:${port}: ${err.code ?? err.message}`)),
    );
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve(true)));
  });
}
