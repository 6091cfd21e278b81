import { z } from 'zod';
import { UserRoleSchema } from '@pga/contracts';

export const SessionUserSchema = z.object({
  id: z.uuid(),
  username: z.string(),
  display_name: z.string().nullable(),
  role: UserRoleSchema,
});

/** A user as the API shows it: never the password hash. */
export const UserSchema = SessionUserSchema.extend({
  email: z.string().nullable(),
  disabled: z.boolean(),
  last_login_at: z.string().nullable(),
  created_at: z.string(),
});
export type User = z.infer<typeof UserSchema>;

export const USER_COLUMNS = 'id, username, display_name, role, email, disabled, last_login_at, created_at';

export function toUser(row: Record<string, unknown>): User {
  return UserSchema.parse({
    ...row,
    last_login_at: row.last_login_at ? (row.last_login_at as Date).toISOString() : null,
    created_at: (row.created_at as Date).toISOString(),
  });
}

export const UsernameSchema = z
  .string()
  .trim()
  .min(3, 'must be at least 3 characters')
  .max(64, 'must be at most 64 characters')
  .regex(/^[A-Za-z0-9._@-]+$/, 'may contain letters, digits and . _ @ - only');
export const NewPasswordSchema = z.string().min(12, 'must be at least 12 characters').max(256, 'must be at most 256 characters');
