import { createHmac } from 'node:crypto';
import type { Context } from '../trpc/context';
import type { Actor } from './write-audit';

/** The audit actor of a request: the signed-in user, their IP and user agent. */
export function actorOf(ctx: Pick<Context, 'user' | 'ip' | 'userAgent'>): Actor {
  return { id: ctx.user?.id ?? null, name: ctx.user?.username ?? null, ip: ctx.ip, userAgent: ctx.userAgent };
}

/**
 * The audit log's name for a sign-in attempt as a username no account has: never the typed text
 * (people type their password into the username field, and viewers read the audit log), but a
 * keyed hash of it, `unknown user #<12 hex>`, the same for the same text (case-insensitive), so
 * repeated attempts at one name can be told apart from a spray across many. `key` is the
 * installation's marker key (./marker-key.ts: random, stored encrypted with ENCRYPTION_KEY, so the
 * marker cannot be checked against guesses without it; unchanged by JWT_SECRET rotations).
 */
export function unknownUserName(key: Buffer, typed: string): string {
  return `unknown user #${createHmac('sha256', key).update(typed.toLowerCase()).digest('hex').slice(0, 12)}`;
}
