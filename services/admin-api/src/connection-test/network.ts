import { lookup } from 'node:dns/promises';
import { isIP, connect, type Socket } from 'node:net';
import { StageFailure } from './result';

/** `host:port` as an admin reads it: an IPv6 address in brackets (`[::1]:5432`, not `::1:5432`). */
export const hostPort = (host: string, port: number): string => (isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`);

/** Resolves the host (DNS stage); an IP literal passes through. */
export async function resolveHost(host: string, timeoutMs: number): Promise<string> {
  if (isIP(host)) return host;
  try {
    const result = await Promise.race([
      lookup(host),
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(Object.assign(new Error('timeout'), { code: 'ETIMEOUT' })), timeoutMs).unref(),
      ),
    ]);
    return result.address;
  } catch (err) {
    const code = (err as { code?: string }).code;
    if (code === 'ENOTFOUND' || code === 'ENODATA')
      throw new StageFailure('dns', `the host name "${host}" does not resolve: check its spelling, or the DNS of this server`);
    if (code === 'ETIMEOUT') throw new StageFailure('dns', `resolving "${host}" took too long: the DNS server does not answer`);
    throw new StageFailure('dns', `resolving "${host}" failed (${code ?? 'error'}): the DNS server is unreachable or refused`);
  }
}

/** Opens a TCP connection (TCP stage) and hands over the socket. */
export function connectTcp(address: string, port: number, host: string, timeoutMs: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: address, port });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(
        new StageFailure(
          'tcp',
          `no answer from ${hostPort(host, port)} within ${Math.round(timeoutMs / 100) / 10} s: a firewall or security group may drop the traffic`,
        ),
      );
    }, timeoutMs);
    socket.once('connect', () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      const where = hostPort(host, port);
      if (err.code === 'ECONNREFUSED')
        reject(
          new StageFailure(
            'tcp',
            `connection refused by ${where}: nothing listens on that port (is the database running, is the port right?)`,
          ),
        );
      else if (err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH')
        reject(new StageFailure('tcp', `${where} is unreachable from this server: check routing / VPC peering`));
      else reject(new StageFailure('tcp', `could not connect to ${where} (${err.code ?? 'error'})`));
    });
  });
}
