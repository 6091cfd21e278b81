import { randomUUID } from 'node:crypto';
import type { PushItem } from '@pga/contracts';
import type { PushBody } from '../../../bench/src/load/payloads';

/**
 * A generator of PushItems as the edge enqueues them, for the writer's benchmark scripts: `n` pushes
 * with fresh ids, body `i` from the pool and collector `i` from the list (round robin).
 */
export function pushItems(bodies: PushBody[], collectors: string[]) {
  return (n: number): PushItem[] =>
    Array.from({ length: n }, (_, i) => {
      const b = bodies[i % bodies.length]!;
      return {
        push_id: randomUUID(),
        collector_id: collectors[i % collectors.length]!,
        received_at: new Date().toISOString(),
        checksum: b.checksum,
        body: b.json.toString('utf8'),
      };
    });
}
