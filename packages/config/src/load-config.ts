import type { z } from 'zod';

/** Raised when the environment does not satisfy a process's config schema. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/**
 * Parses `env` with `schema` once. On failure throws a ConfigError whose message is one line naming
 * every offending variable, e.g. `invalid environment: INGEST_PORT: expected a port number (got "abc")`.
 * `main.ts` files catch it, print the message and exit 1.
 */
export function loadConfig<S extends z.ZodType>(schema: S, env: Record<string, string | undefined> = process.env): z.infer<S> {
  const result = schema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const key = issue.path.join('.') || '(root)';
    const value = typeof issue.path[0] === 'string' ? env[issue.path[0]] : undefined;
    const shown = value === undefined ? 'it is not set' : `got ${JSON.stringify(redactIfSecret(key, value))}`;
    return `${key}: ${issue.message} (${shown})`;
  });
  throw new ConfigError(`invalid environment: ${problems.join('; ')}`);
}

/** Names of variables whose values are never shown (ENCRYPTION_KEY, JWT_SECRET; not REDIS_KEY_PREFIX). */
const SECRET_KEY = /PASSWORD|SECRET|TOKEN|_KEY$/i;

function redactIfSecret(key: string, value: string): string {
  if (SECRET_KEY.test(key)) return '[redacted]';
  // URLs may carry a password: show them without it. Trusted only when the URL parser read the same
  // `user:password@` as the text holds: a password with an unencoded `/` (`postgres://u:12/ab@h/db`)
  // parses as a host `u:12` and a path, and would be shown whole.
  const at = value.lastIndexOf('@');
  if (at < 0) return value;
  let u: URL | undefined;
  try {
    u = new URL(value);
  } catch {
    // not a URL
  }
  const userinfo = value.slice(value.indexOf('//') + 2, at);
  if (u?.host && value.includes('//') && userinfo === `${u.username}${u.password ? `:${u.password}` : ''}`) {
    if (u.password) u.password = '***';
    return u.toString();
  }
  // Otherwise mask all before the last `@` after any `//`.
  return value.replace(/^([^@]*?\/\/)?.*@/s, (_m, start: string | undefined) => `${start ?? ''}***@`);
}

/** For `main.ts`: returns the config, or prints the one-line ConfigError as `<process>: …` and exits 1. */
export function configOrExit<T>(processName: string, read: () => T): T {
  try {
    return read();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`${processName}: ${err.message}`);
    process.exit(1);
  }
}
