import { hash } from 'node:crypto';

/**
 * The push id is derived from (collector, idempotency key) — a name-based UUID (version 8 layout
 * over SHA-256) — so a replay that reaches the writer twice (edge died between enqueue and marker)
 * carries the same id and the writer's ledger stores it once. Keyed per collector, so one collector
 * can never collide with another's ids.
 */
export function derivePushId(collectorId: string, idempotencyKey: string): string {
  const h = hash('sha256', `${collectorId}\n${idempotencyKey}`, 'hex');
  const variant = ((parseInt(h[16]!, 16) & 0x3) | 0x8).toString(16);
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-8${h.slice(13, 16)}-${variant}${h.slice(17, 20)}-${h.slice(20, 32)}`;
}
