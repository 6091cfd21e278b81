import { z } from 'zod';
import { DEFAULT_KEY_ID } from '@pga/crypto';
import { tokenKeyUsage } from '@pga/db';
import { adminProcedure } from '../../trpc/init';

export const TokenKeySchema = z.object({
  /** `kid` of the tokens; null for tokens issued before key ids. */
  key_id: z.string().nullable(),
  /** The JWT_SECRET key that verifies them: `key_id`, or "k1" for tokens without one. */
  verified_with: z.string(),
  /** That key is in this service's JWT_SECRET (when not, the edge refuses these tokens with 401). */
  configured: z.boolean(),
  /** That key signs new tokens. */
  active: z.boolean(),
  live_tokens: z.number().int(),
  /** Collectors whose newest live token this key signed. */
  collectors: z.number().int(),
  /** When the last of these tokens expires; null when none is live. */
  last_expires_at: z.string().nullable(),
});

/**
 * Which JWT_SECRET keys live collector tokens depend on, for rotating it (README "Rotating
 * JWT_SECRET"): an old key may be dropped once no collector's newest token uses it and the edges'
 * `edge_token_key_requests_total{key_id}` (requests; `edge_token_verifications_total`, token-cache
 * misses) shows none for it. Every configured key is listed, unused ones
 * with zeros, and so is a key that tokens name but JWT_SECRET lacks.
 */
export const tokenKeys = adminProcedure
  .input(z.object({}).optional())
  .output(z.object({ active_key_id: z.string(), keys: z.array(TokenKeySchema) }))
  .query(async ({ ctx }) => {
    const { tokens, pool } = ctx.deps;
    const usage = await tokenKeyUsage(pool, tokens.activeKeyId);
    const configured = new Set(tokens.keyIds);
    const keys = usage.map((u): z.infer<typeof TokenKeySchema> => {
      const verifiedWith = u.keyId ?? DEFAULT_KEY_ID;
      return {
        key_id: u.keyId,
        verified_with: verifiedWith,
        configured: configured.has(verifiedWith),
        active: verifiedWith === tokens.activeKeyId,
        live_tokens: u.liveTokens,
        collectors: u.collectors,
        last_expires_at: u.lastExpiresAt.toISOString(),
      };
    });
    for (const id of tokens.keyIds)
      if (!keys.some((k) => k.key_id === id))
        keys.push({
          key_id: id,
          verified_with: id,
          configured: true,
          active: id === tokens.activeKeyId,
          live_tokens: 0,
          collectors: 0,
          last_expires_at: null,
        });
    return { active_key_id: tokens.activeKeyId, keys };
  });
