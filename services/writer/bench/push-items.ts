import { randomUUID } from 'node:crypto';
import type { PushItemV2 } from '@pga/contracts';
import type { PushBody } from '../../../bench/src/load/payloads';

/**
 * A generator of PushItems as the edge enqueues them (PushJob v2: the body as base64), for the
 * writer's benchmark scripts: `n` pushes with fresh ids, body `i` from the pool and collector `i`
 * from the list (round robin).
 */
export function pushItems(bodies: PushBody[], collectors: string[]) {
  return (n: number): PushItemV2[] =>
    Array.from({ length: n }, (_, i) => {
      const b = bodies[i % bodies.length]!;
      return {
        push_id: randomUUID(),
        collector_id: collectors[i % collectors.length]!,
        received_at: new Date().toISOString(),
        checksum: b.checksum,
        body_base64: b.json.toString('base64'),
      };
    });
}
