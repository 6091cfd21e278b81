-- Attempts refused by the login rate limit are kept (counted, pruned with the others after a day)
-- instead of deleted, marked so that they do not count as failures: retrying while locked out
-- does not extend the lock-out (services/admin-api/src/auth/login-limit.ts).
ALTER TABLE login_attempts ADD COLUMN refused boolean NOT NULL DEFAULT false;
