export { createPool, describeConnectFailure, describeDatabase, poolConfigFromUrl, type Pool, type PoolClient } from './pool';
export { runMigrations, SUPERSEDED_CHECKSUMS, type MigrationOptions, type MigrationResult } from './migrate';
export { maintainPartitions, type PartitionMaintenanceResult } from './partitions';
export {
  isLostConnection,
  isDatabaseUnavailable,
  isDiskFull,
  isTransientPgError,
  isUniqueViolation,
  pgErrorCode,
  pgConstraint,
  pgErrorKind,
  PG_ERROR_KINDS,
  unavailableReason,
  type PgErrorKind,
} from './pg-errors';
export { withTransaction } from './transaction';
export { checkOut, type CheckedOutClient } from './check-out';
export { MIGRATIONS_DIR, migrateDatabase } from './migrations-dir';
export { dateStyleRefusal } from './date-style';
export { recordIssuedToken, revokeCollectorTokens, type IssuedTokenRecord } from './collector-tokens';
export { recordIssuedTokens } from './collector-tokens-bulk';
export { tokenKeyUsage, type TokenKeyUsage } from './token-key-usage';
export { checkTokenKeyIds, checkTokenKeyIdsAtStart } from './token-key-check';
export { settingMs, statementTimeoutDropped, warnIfStatementTimeoutDropped } from './statement-timeout-check';
export { DENIED_AFTER_EXPIRY, readDatabaseDenyState, type DatabaseDenyState } from './deny-state';
export {
  checkStoredKeyIds,
  countSecretsByKeyId,
  SECRET_COLUMNS,
  type SecretColumn,
  type SecretKeyIdCount,
} from './secret-key-ids';
