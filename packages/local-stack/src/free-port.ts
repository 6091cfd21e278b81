import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { GiveUp } from './wait-for';

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

/**
 * A server's start that failed because its port was taken: it exited saying "Address already in use"
 * (between `freePort()` and its listen, or while it was stopped, another process listened there).
 * A GiveUp: waiting longer cannot help.
 */
export class PortInUseError extends GiveUp {
  override readonly name: string = 'PortInUseError';
  readonly code = 'EADDRINUSE';
  constructor(
    readonly port: number,
    message: string,
  ) {
    super(message);
  }
}

/** Whether a server's output says its listen failed for a port in use. */
export const saysPortInUse = (output: string) => /Address already in use/i.test(output);

/**
 * The error for a server that exited at start, with the end of what it printed (`outputTail`): a
 * PortInUseError, naming the port first, when that says its port was taken; a GiveUp otherwise.
 */
export function exitedAtStart(server: string, port: number, logFile: string, outputTail: (lines: number) => string): GiveUp {
  const message = `${server} exited at start (log: ${logFile})${outputTail(5)}`;
  return saysPortInUse(outputTail(20))
    ? new PortInUseError(port, `127.0.0.1:${port} is taken by another process: ${message}`)
    : new GiveUp(message);
}

/**
 * Starts a server on a port of `freePort()`, and on another when the start loses that port to
 * another process (PortInUseError), up to `attempts` ports. For servers whose callers take any
 * port; one restarted on the port its clients know cannot pick again (its PortInUseError says so).
 */
export async function startOnFreePort<T>(
  start: (port: number) => Promise<T>,
  { attempts = 5, pick = freePort }: { attempts?: number; pick?: () => Promise<number> } = {},
): Promise<T> {
  const tried: number[] = [];
  for (;;) {
    const port = await pick();
    tried.push(port);
    try {
      return await start(port);
    } catch (err) {
      if (!(err instanceof PortInUseError)) throw err;
      if (tried.length >= attempts) {
        throw new PortInUseError(err.port, `every port tried was taken (${tried.join(', ')}); the last: ${err.message}`);
      }
    }
  }
}
