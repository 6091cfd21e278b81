import { z } from 'zod';

/** Values the schema's CHECK constraints allow (migrations/0001_init.sql). */
export const COLLECTOR_TYPES = ['postgresql', 'mysql', 'mongodb', 'oracle'] as const;
export const ENVIRONMENTS = ['development', 'staging', 'production'] as const;
export const COLLECTOR_STATUSES = ['pending', 'active', 'inactive', 'error'] as const;
/** libpq sslmode names; the design's `requireCA`/`requireFull` are accepted as aliases on input. */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export const USER_ROLES = ['admin', 'viewer'] as const;

export const CollectorTypeSchema = z.enum(COLLECTOR_TYPES);
export const EnvironmentSchema = z.enum(ENVIRONMENTS);
export const CollectorStatusSchema = z.enum(COLLECTOR_STATUSES);
export const SslModeSchema = z.enum(SSL_MODES);
export const UserRoleSchema = z.enum(USER_ROLES);
export type CollectorType = z.infer<typeof CollectorTypeSchema>;
export type Environment = z.infer<typeof EnvironmentSchema>;
export type CollectorStatus = z.infer<typeof CollectorStatusSchema>;
export type UserRole = z.infer<typeof UserRoleSchema>;
