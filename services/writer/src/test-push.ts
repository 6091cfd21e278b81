import { createHash, randomUUID } from 'node:crypto';
import { preparePush, type PreparedPush } from './prepare-push';

/** For unit tests: a v2 push item of `body`, prepared as the worker would. */
export function preparedTestPush(body = '{"metrics":[{"type":"t"}]}'): PreparedPush {
  const bytes = Buffer.from(body);
  return preparePush({
    push_id: randomUUID(),
    collector_id: randomUUID(),
    received_at: '2026-11-27T20:00:00.000Z',
    checksum: createHash('sha256').update(bytes).digest('hex'),
    body_base64: bytes.toString('base64'),
  });
}
