import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

/** The kernel's range for outgoing connections' local ports (Linux); the usual default elsewhere. */
function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (low && high) return [low, high];
  } catch {
    // not Linux
  }
  return [32768, 60999];
}

/** Whether 127.0.0.1:`port` can be listened on now; resolves the port the OS gave for 0. */
function tryListen(port: number): Promise<number | undefined> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(undefined));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : undefined));
    });
  });
}

const BELOW_EPHEMERAL = 10_000;

/**
 * A TCP port on 127.0.0.1 that was free a moment ago. Picked below the kernel's ephemeral range
 * when there is room: a port the OS hands out for port 0 comes from that range, which every
 * outgoing connection (to Redis, to PostgreSQL) also takes its local port from, so between this
 * check and the server's listen a client connection could take it (EADDRINUSE, seen in CI).
 */
export async function freePort(): Promise<number> {
  const [low] = ephemeralRange();
  if (low - BELOW_EPHEMERAL >= 1000) {
    for (let attempt = 0; attempt < 50; attempt++) {
      const port = BELOW_EPHEMERAL + Math.floor(Math.random() * (low - BELOW_EPHEMERAL));
      if ((await tryListen(port)) !== undefined) return port;
    }
  }
  const port = await tryListen(0);
  if (port === undefined) throw new Error('no free port on 127.0.0.1');
  return port;
}
