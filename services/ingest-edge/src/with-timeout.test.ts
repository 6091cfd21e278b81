import { once } from 'node:events';
import { connect, createServer, type AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { loopClock, NoAnswerError, withTimeout } from './with-timeout';

/** Keeps this process's event loop busy for `ms`, as parsing, hashing and encoding a 64 MiB push does. */
const block = (ms: number) => {
  const end = performance.now() + ms;
  while (performance.now() < end);
};

describe('withTimeout', () => {
  it('rejects an answer that does not come in time', async () => {
    await expect(withTimeout(new Promise(() => undefined), 50)).rejects.toThrow(NoAnswerError);
  });

  it("does not count this process's own blocked loop: an answer waiting behind it still counts", async () => {
    // As at the edge: a socket callback (a large push's request) blocks the loop after a command went
    // out; its answer arrives meanwhile and waits in the socket, read only after the overdue timers.
    const server = createServer((s) => s.on('data', (d) => s.write(d))); // answers what it is sent
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    try {
      const timed = new Promise<{ answer: Promise<string> }>((resolve) => {
        client.once('data', () => {
          const answer = new Promise<string>((r) => client.once('data', (d) => r(String(d))));
          client.write('stored');
          const t = withTimeout(answer, 500);
          t.catch(() => undefined);
          block(2000);
          resolve({ answer: t });
        });
      });
      client.write('x');
      await expect((await timed).answer).resolves.toBe('stored');
    } finally {
      client.destroy();
      server.close();
    }
  });

  it('keeps a loop clock that stands still while the loop is blocked', async () => {
    const wallBefore = performance.now();
    const before = loopClock();
    block(1500);
    await new Promise((r) => setTimeout(r, 300));
    const elapsed = loopClock() - before;
    const wall = performance.now() - wallBefore;
    // It went on while the loop was free, and counted at most two ticks (200 ms) of the 1.5 s block.
    expect(elapsed).toBeGreaterThan(0);
    expect(elapsed).toBeLessThanOrEqual(wall - 1500 + 200);
  });
});
