import { connect, createServer, type AddressInfo, type Socket } from 'node:net';

export interface OptionsDroppingProxy {
  /** `databaseUrl` through the proxy. */
  url(databaseUrl: string): string;
  close(): Promise<void>;
}

/**
 * A TCP proxy in front of PostgreSQL that drops the `options` startup parameter, as PgBouncer does
 * with `options` in `ignore_startup_parameters` (what a PgBouncer before 1.20 needs to accept our
 * connections at all). Plain TCP only (no SSLRequest), as the test server speaks.
 */
export async function optionsDroppingProxy(target: URL): Promise<OptionsDroppingProxy> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    sockets.add(client);
    client.on('close', () => sockets.delete(client));
    client.on('error', () => undefined);
    let pending = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      pending = Buffer.concat([pending, chunk]);
      if (pending.length < 4 || pending.length < pending.readInt32BE(0)) return;
      client.off('data', onData);
      const length = pending.readInt32BE(0);
      const fields = pending
        .subarray(8, length - 1)
        .toString('utf8')
        .split('\0');
      const kept: string[] = [];
      for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] !== 'options') kept.push(fields[i]!, fields[i + 1]!);
      const body = Buffer.from(`${kept.join('\0')}\0\0`, 'utf8');
      const startup = Buffer.alloc(8);
      startup.writeInt32BE(8 + body.length, 0);
      startup.writeInt32BE(pending.readInt32BE(4), 4); // protocol 3.0
      const upstream = connect(Number(target.port), target.hostname);
      sockets.add(upstream);
      upstream.on('close', () => sockets.delete(upstream));
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
      upstream.write(Buffer.concat([startup, body, pending.subarray(length)]));
      client.pipe(upstream).pipe(client);
    };
    client.on('data', onData);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (databaseUrl) => {
      const url = new URL(databaseUrl);
      url.host = `127.0.0.1:${port}`;
      return url.toString();
    },
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}
