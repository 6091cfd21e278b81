import { createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { connectTcp, hostPort } from './network';

describe('connection test messages', () => {
  it('write an IPv6 target in brackets: ::1:5432 reads as one address', () => {
    expect(hostPort('::1', 5432)).toBe('[::1]:5432');
    expect(hostPort('2001:db8::5', 3306)).toBe('[2001:db8::5]:3306');
    expect(hostPort('127.0.0.1', 5432)).toBe('127.0.0.1:5432');
    expect(hostPort('db.example.com', 5432)).toBe('db.example.com:5432');
  });

  it('name a refused IPv6 target as [address]:port', async () => {
    // A port nothing listens on: one taken and given back.
    const server = createServer();
    const port = await new Promise<number>((resolve) =>
      server.listen(0, '::1', () => resolve((server.address() as { port: number }).port)),
    );
    await new Promise((resolve) => server.close(resolve));
    await expect(connectTcp('::1', port, '::1', 2000)).rejects.toThrow(`connection refused by [::1]:${port}:`);
  });
});
