export { createPool, poolConfigFromUrl, type Pool, type PoolClient } from './pool';
export { runMigrations, type MigrationResult } from './migrate';
export { maintainPartitions, type PartitionMaintenanceResult } from './partitions';
export { isDatabaseUnavailable, isTransientPgError, isUniqueViolation, pgErrorCode, pgConstraint } from './pg-errors';
export { withTransaction } from './transaction';
export { checkOut, type CheckedOutClient } from './check-out';
export { MIGRATIONS_DIR, migrateDatabase } from './migrations-dir';
export { recordIssuedToken, revokeCollectorTokens, type IssuedTokenRecord } from './collector-tokens';
export { recordIssuedTokens } from './collector-tokens-bulk';
