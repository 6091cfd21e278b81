import { z } from 'zod';
import { EnvironmentSchema } from '@pga/contracts';

/** An enrollment secret as listed: never the secret or its hash. */
export const EnrollmentSecretSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  group: z.object({ id: z.uuid(), name: z.string() }).nullable(),
  environment: EnvironmentSchema,
  expires_at: z.string().nullable(),
  max_uses: z.number().int().nullable(),
  uses: z.number().int(),
  revoked_at: z.string().nullable(),
  /** active, or why the edge refuses it: expired / used_up / revoked. */
  state: z.enum(['active', 'expired', 'used_up', 'revoked']),
  created_by: z.string().nullable(),
  created_at: z.string(),
});
export type EnrollmentSecret = z.infer<typeof EnrollmentSecretSchema>;

export const ENROLLMENT_SELECT = `SELECT s.id, s.name, s.group_id, g.name AS group_name, s.environment, s.expires_at, s.max_uses, s.uses,
       s.revoked_at, s.created_at, u.username AS created_by,
       CASE WHEN s.revoked_at IS NOT NULL THEN 'revoked'
            WHEN s.expires_at IS NOT NULL AND s.expires_at <= now() THEN 'expired'
            WHEN s.max_uses IS NOT NULL AND s.uses >= s.max_uses THEN 'used_up'
            ELSE 'active' END AS state
  FROM enrollment_secrets s
  LEFT JOIN collector_groups g ON g.id = s.group_id
  LEFT JOIN users u ON u.id = s.created_by`;

const iso = (v: unknown) => (v instanceof Date ? v.toISOString() : null);

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a pg row, checked by EnrollmentSecretSchema.parse
export function toEnrollmentSecret(r: Record<string, any>): EnrollmentSecret {
  return EnrollmentSecretSchema.parse({
    id: r.id,
    name: r.name,
    group: r.group_id ? { id: r.group_id, name: r.group_name } : null,
    environment: r.environment,
    expires_at: iso(r.expires_at),
    max_uses: r.max_uses,
    uses: r.uses,
    revoked_at: iso(r.revoked_at),
    state: r.state,
    created_by: r.created_by,
    created_at: iso(r.created_at),
  });
}
