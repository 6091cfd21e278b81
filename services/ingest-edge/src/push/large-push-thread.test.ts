import { afterEach, describe, expect, it } from 'vitest';
import { AppError } from '@pga/contracts';
import { createLogger } from '@pga/logger';
import { createEdgeMetrics } from '../ops/edge-metrics';
import { LargePushThread } from './large-push-thread';
import { preparePush } from './prepare-push';

const collectorId = '0d6f3c52-5a8e-4d1e-9c1a-2b7e4f0a9c11';
const metrics = createEdgeMetrics({
  ready: () => true,
  inflightBytes: () => 0,
  cache: () => ({ hits: 0, verified: 0, invalid: 0, size: 0 }),
});
const logger = createLogger({ name: 'large-push-thread-test', level: 'silent', pretty: false });
/** ~2 MiB: an envelope of elements with 64-bit integers and non-ASCII text. */
const envelope = (extra = '') =>
  Buffer.from(
    `{"collector_id":"${collectorId}","metrics":[${Array.from({ length: 2000 }, (_, i) => `{"type":"t","queryid":-9223372036854775808,"i":${i},"q":"${'ü'.repeat(500)}"}`).join(',')}]${extra}}`,
  );

describe('LargePushThread', () => {
  let thread: LargePushThread | undefined;
  afterEach(async () => thread?.close());

  it('prepares a body exactly as the event loop would, and hands the same bytes back', async () => {
    thread = new LargePushThread({ logger, metrics });
    const body = envelope();
    const expected = preparePush({ body, collectorId, idempotencyHeader: 'key-1' });
    const sent = Buffer.from(body);
    const large = await thread.prepare({ body: sent, collectorId, idempotencyHeader: 'key-1' });
    expect({ ...large, body: undefined }).toEqual({ ...expected, body: undefined });
    expect(large.records).toBe(2000);
    expect(large.body.equals(body)).toBe(true);
    // Handed over, not copied: the caller's buffer is gone (it came back as `large.body`).
    expect(sent.length).toBe(0);
    // A body sharing its memory (a slice of a larger buffer) is copied there and back, whole.
    const shared = Buffer.concat([Buffer.from('xx'), body]).subarray(2);
    expect((await thread.prepare({ body: shared, collectorId, idempotencyHeader: 'key-1' })).body.equals(body)).toBe(true);
  });

  it('answers refusals with the same errors as the event loop', async () => {
    thread = new LargePushThread({ logger, metrics });
    for (const body of [envelope().subarray(0, -1), Buffer.concat([envelope().subarray(0, -1), Buffer.from([0xff, 0x7d])])]) {
      const local = (() => {
        try {
          preparePush({ body, collectorId, idempotencyHeader: '' });
        } catch (err) {
          return err as AppError;
        }
      })();
      expect(local).toBeInstanceOf(AppError);
      const remote = await thread
        .prepare({ body: Buffer.from(body), collectorId, idempotencyHeader: '' })
        .catch((e: unknown) => e);
      expect(remote).toBeInstanceOf(AppError);
      expect([(remote as AppError).code, (remote as AppError).message]).toEqual([local!.code, local!.message]);
    }
    const other = await thread
      .prepare({ body: envelope(), collectorId: collectorId.replace('0d', 'ff'), idempotencyHeader: '' })
      .catch((e: unknown) => e);
    expect((other as AppError).code).toBe('COLLECTOR_MISMATCH');
  });

  it('a body that cannot be handed over is a fault (a plain Error for the route to log and answer 500), and nothing is left waiting', async () => {
    thread = new LargePushThread({ logger, metrics, idleMs: 50 });
    const body = envelope();
    structuredClone(body.buffer, { transfer: [body.buffer as ArrayBuffer] }); // detached: handed over elsewhere
    const err = await thread.prepare({ body, collectorId, idempotencyHeader: '' }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err).not.toBeInstanceOf(AppError);
    // The thread still works, and goes idle (nothing pending kept it alive).
    expect((await thread.prepare({ body: envelope(), collectorId, idempotencyHeader: '' })).records).toBe(2000);
    await expect.poll(() => thread!.running, { timeout: 5000 }).toBe(false);
  });

  it('ends an idle thread and starts a new one for the next large push; after close it answers 503', async () => {
    thread = new LargePushThread({ logger, metrics, idleMs: 50 });
    expect(thread.running).toBe(false);
    await thread.prepare({ body: envelope(), collectorId, idempotencyHeader: '' });
    expect(thread.running).toBe(true);
    await expect.poll(() => thread!.running, { timeout: 5000 }).toBe(false);
    expect((await thread.prepare({ body: envelope(), collectorId, idempotencyHeader: '' })).records).toBe(2000);
    await thread.close();
    await expect(thread.prepare({ body: envelope(), collectorId, idempotencyHeader: '' })).rejects.toMatchObject({
      code: 'UNAVAILABLE',
    });
  });
});
