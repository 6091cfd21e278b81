export type { AppRouter } from './routers/app-router';
export { appRouter } from './routers/app-router';
export { createAdminService, type AdminService } from './create-admin-service';
export { readAdminConfig, AdminConfigSchema, type AdminConfig } from './config';
export { createCallerFactory } from './trpc/init';
export type { Context, SessionUser } from './trpc/context';
export { createDeps, type Deps } from './deps';
export { adoptInstallation, readInstallationId } from './collectors/installation';
export {
  reencryptSecrets,
  allCurrent,
  REENCRYPT_AUDIT_ACTION,
  type ReencryptSummary,
  type UndecryptableSecret,
} from './collectors/reencrypt-secrets';
