import { accessSync, constants } from 'node:fs';
import { z } from 'zod';
import { jwtSecretProblem, keyringProblem } from '@pga/crypto';

/**
 * `NAME=` (set but empty, as a compose file or a shell script with an unset variable writes it)
 * means the default, not a value: `WRITER_MIGRATE=` must not turn migrations off, nor
 * `ENQUEUE_TIMEOUT_MS=` read as 0.
 */
const emptyIsUnset = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => (typeof v === 'string' && v.trim() === '' ? undefined : v), schema);

/**
 * A whole number written in decimal digits. `z.coerce.number` took anything `Number()` takes:
 * `0x10` as 16, `1e1` as 10, `0b11` as 3 — a typo or a misread value started the service silently.
 */
const decimal = (message: string) =>
  z.preprocess(
    (v) => (typeof v === 'number' ? String(v) : v),
    z
      .string({ message })
      .trim()
      .regex(/^[+-]?\d+$/, message)
      .transform(Number),
  );

/** A TCP port from an environment string, with a default. */
export const port = (fallback: number) =>
  emptyIsUnset(
    decimal('expected a port number')
      .pipe(z.number().min(0, 'expected a port 0-65535').max(65535, 'expected a port 0-65535'))
      .default(fallback),
  );

/**
 * An address to listen on (ADMIN_HOST, INGEST_HOST, WRITER_HOST), with a default. An IPv6 address
 * may be written as in a URL, `[::1]` or `[::]`: the brackets are taken off (Node and uWS.js look
 * the bracketed text up as a host name, and the service did not start).
 */
export const listenHost = (fallback: string) =>
  z
    .string()
    .transform((h) => h.trim().replace(/^\[(.*)\]$/s, '$1'))
    .default(fallback);

/** A URL with one of the given schemes. */
export const url = (...schemes: string[]) =>
  z.string().refine(
    (value) => {
      try {
        return schemes.includes(new URL(value).protocol.replace(/:$/, ''));
      } catch {
        return false;
      }
    },
    { message: `expected a URL starting with ${schemes.map((s) => `${s}://`).join(' or ')}` },
  );

/** libpq's sslmode values (`@pga/db`'s pool says what each does). */
export const SSL_MODES = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;

/**
 * A PostgreSQL URL whose `sslmode` is one libpq knows and whose `sslrootcert` can be read. A typo
 * (`verify_full`) or node-postgres's own `no-verify` used to mean plain TCP, silently: against a
 * server that also accepts that, the connection went unencrypted. psql refuses such a URL too.
 */
export const postgresUrl = () =>
  url('postgres', 'postgresql').superRefine((value, ctx) => {
    let params: URLSearchParams;
    try {
      params = new URL(value).searchParams;
    } catch {
      return; // said by url()
    }
    const mode = params.get('sslmode');
    if (mode !== null && !(SSL_MODES as readonly string[]).includes(mode))
      ctx.addIssue({ code: 'custom', message: `sslmode "${mode}" is not one of ${SSL_MODES.join(', ')}` });
    const rootcert = params.get('sslrootcert');
    // libpq 16's `system`: the system's CAs, and then nothing weaker than verify-full.
    if (rootcert === 'system') {
      if (mode !== null && mode !== 'verify-full')
        ctx.addIssue({ code: 'custom', message: `sslrootcert=system needs sslmode=verify-full (or none), not "${mode}"` });
    } else if (rootcert !== null) {
      try {
        accessSync(rootcert, constants.R_OK);
      } catch (err) {
        ctx.addIssue({
          code: 'custom',
          message: `sslrootcert ${rootcert} cannot be read (${(err as { code?: string }).code ?? 'error'})`,
        });
      }
    }
  });

/** "true"/"false"/"1"/"0"/"yes"/"no" → boolean; empty or unset → the default. */
export const bool = (fallback: boolean) =>
  emptyIsUnset(
    z
      .enum(['true', 'false', '1', '0', 'yes', 'no'], { message: 'expected true or false' })
      .default(fallback ? 'true' : 'false')
      .transform((v) => v === 'true' || v === '1' || v === 'yes'),
  );

/** A whole number within bounds; empty or unset → the default (itself held to the bounds). */
export const int = (fallback: number, min: number, max: number) =>
  emptyIsUnset(
    decimal('expected a whole number')
      .pipe(z.number().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`))
      .default(Math.min(max, Math.max(min, fallback))),
  );

/** A whole number within bounds, or undefined when unset or empty (the caller picks a fallback). */
export const optionalInt = (min: number, max: number) =>
  emptyIsUnset(
    decimal('expected a whole number')
      .pipe(z.number().min(min, `expected at least ${min}`).max(max, `expected at most ${max}`))
      .optional(),
  );

export const logLevel = z
  .enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], {
    message: 'expected one of fatal, error, warn, info, debug, trace, silent',
  })
  .default('info');

/** Variables every process reads. */
export const commonSchema = z.object({
  /** PostgreSQL URL; libpq-style sslmode/sslrootcert query parameters are honoured. */
  DATABASE_URL: postgresUrl(),
  /** Redis URL (redis:// or rediss:// for TLS). */
  REDIS_URL: url('redis', 'rediss'),
  /** pino level; default info. */
  LOG_LEVEL: logLevel,
});

/** Collector-token settings shared by the admin service (issues) and the edge (verifies). */
export const jwtSchema = z.object({
  /**
   * HMAC-SHA256 key(s) for collector JWTs: one secret of 32+ bytes (key id "k1"), or
   * `id:secret,id:secret` (first signs, all verify: rotation). Checked by the parser @pga/tokens uses.
   */
  JWT_SECRET: z
    .string()
    .min(32, { message: 'must be at least 32 characters', abort: true })
    .superRefine((value, ctx) => {
      const problem = jwtSecretProblem(value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
  /** `iss` claim of this installation; default "pganalytics-central". */
  JWT_ISSUER: z.string().min(1).default('pganalytics-central'),
  /** `aud` claim of this installation; default "pganalytics-collectors". */
  JWT_AUDIENCE: z.string().min(1).default('pganalytics-collectors'),
});

/**
 * AES-256-GCM keyring for target passwords: base64 32-byte key, or `id:key,id:key` (first is active).
 * Checked here by the parser the services use (`@pga/crypto`), so a bad key stops start-up with one line.
 */
export const encryptionSchema = z.object({
  ENCRYPTION_KEY: z
    .string()
    .min(1, { message: 'must be set (base64 of 32 random bytes)', abort: true })
    .superRefine((value, ctx) => {
      const problem = keyringProblem(value);
      if (problem) ctx.addIssue({ code: 'custom', message: problem });
    }),
});
