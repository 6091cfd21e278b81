import type { Context } from '../trpc/context';
import type { Actor } from './write-audit';

/** The audit actor of a request: the signed-in user, their IP and user agent. */
export function actorOf(ctx: Pick<Context, 'user' | 'ip' | 'userAgent'>): Actor {
  return { id: ctx.user?.id ?? null, name: ctx.user?.username ?? null, ip: ctx.ip, userAgent: ctx.userAgent };
}
