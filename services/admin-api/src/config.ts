import { z } from 'zod';
import {
  loadConfig,
  commonSchema,
  jwtSchema,
  encryptionSchema,
  port,
  listenHost,
  url,
  bool,
  int,
  optionalInt,
  trustProxySchema,
} from '@pga/config';

const MiB = 1024 * 1024;

export const AdminConfigSchema = commonSchema
  .extend(jwtSchema.shape)
  .extend(encryptionSchema.shape)
  // TRUST_PROXY (X-Forwarded-For / -Proto / -Host from a reverse proxy: http/request-meta.ts), TRUST_PROXY_HOPS
  .extend(trustProxySchema.shape)
  .extend({
    /** Port of the API (/trpc) and the UI; default 3000. */
    ADMIN_PORT: port(3000),
    /** Address to listen on; default 0.0.0.0 (`npm start` uses 127.0.0.1). */
    ADMIN_HOST: listenHost('0.0.0.0'),
    /** The ingest edge's URL as collectors reach it, for setup instructions; default http://127.0.0.1:8080. */
    CENTRAL_API_URL: url('http', 'https').default('http://127.0.0.1:8080'),
    /** Folder of the built web UI; default web/dist. */
    WEB_DIST_DIR: z.string().optional(),
    /** Prefix of every Redis key/channel (shared with edge and writer); default "pga". */
    REDIS_KEY_PREFIX: z.string().min(1).default('pga'),
    /** Session lifetime in hours (absolute, not sliding); default 12. */
    SESSION_TTL_HOURS: int(12, 1, 24 * 30),
    /** Session lookups (one per request with a session cookie) running at once, of the pool's 10 connections; default 4. */
    SESSION_LOOKUP_CONCURRENCY: int(4, 1, 10),
    /** Milliseconds a request waits for a session-lookup slot before it is answered 503; default 1000. */
    SESSION_LOOKUP_WAIT_MS: int(1000, 10, 60_000),
    /** "true": always mark the session cookie Secure; "false": only when the request came over TLS; default false. */
    COOKIE_SECURE: bool(false),
    /**
     * Host names (comma-separated, a port is ignored) the service answers to besides IP addresses,
     * localhost and *.localhost: the public name an operator reaches it by; `*` answers to any
     * (http/security-headers.ts hostAllowed); default none.
     */
    ADMIN_ALLOWED_HOSTS: z
      .string()
      .default('')
      .transform((s) =>
        s
          .split(',')
          .map((h) => h.trim().toLowerCase())
          .filter(Boolean),
      ),
    /** Extra origins allowed to POST (comma-separated, e.g. the Vite dev server); default none. */
    ALLOWED_ORIGINS: z
      .string()
      .default('')
      .transform((s) =>
        s
          .split(',')
          .map((o) => o.trim().replace(/\/$/, ''))
          .filter(Boolean),
      ),
    /** Failed logins per username within LOGIN_WINDOW_MINUTES before refusing; default 5. */
    LOGIN_MAX_FAILURES_PER_USER: int(5, 1, 1000),
    /** Failed logins per client IP within LOGIN_WINDOW_MINUTES before refusing; default 20. */
    LOGIN_MAX_FAILURES_PER_IP: int(20, 1, 100000),
    /** Window of the login rate limit, in minutes; default 15. */
    LOGIN_WINDOW_MINUTES: int(15, 1, 24 * 60),
    /** Connection tests (testConnection, register, bulk import) running at once; default 4. */
    CONNECTION_TEST_CONCURRENCY: int(4, 1, 64),
    /** Timeout of one connection test, in milliseconds; default 5000. */
    CONNECTION_TEST_TIMEOUT_MS: int(5000, 100, 60_000),
    /**
     * Largest collectors.bulkImport request body in bytes, at most 512 MiB; default MAX_BODY_BYTES's,
     * or 32 MiB. Admins only: every other procedure, and a caller not signed in as an admin, has
     * 1 MiB (http/request-body.ts MAX_CALL_BODY_BYTES).
     */
    ADMIN_MAX_BODY_BYTES: optionalInt(1024, 512 * MiB),
    /**
     * The fallback of ADMIN_MAX_BODY_BYTES (this service's variable before it), held to 512 MiB. The
     * edge's body cap too (up to 1 GiB there), and `npm start` gives every service its environment:
     * a cap above 512 MiB for the edge must not stop this service.
     */
    MAX_BODY_BYTES: optionalInt(1024, 1024 * MiB),
    /**
     * Bulk imports with a body over 1 MiB at once (read, parsed and run); one more gets 429 with
     * Retry-After before its body is read; default 2.
     */
    ADMIN_BULK_IMPORTS_AT_ONCE: int(2, 1, 64),
    /**
     * Bytes of request bodies signed-in requests together may hold at once, from their admission
     * until their answer (a body's declared length, or its limit when chunked): only bodies over
     * 64 KiB (or chunked) sent with a session take a share, bulk imports holding a slot
     * (ADMIN_BULK_IMPORTS_AT_ONCE) excepted; a request that would pass it is answered 503 with
     * Retry-After before its body is read, and an accepted one is never cut for it. At least 1 MiB
     * (the largest body it covers), at most 2 GiB; default 64 MiB.
     */
    ADMIN_BODY_BUDGET_BYTES: int(64 * MiB, MiB, 2048 * MiB),
    /**
     * Bytes of ADMIN_BODY_BUDGET_BYTES the requests of one user (all their sessions together, in this
     * process) may hold at once: one more body that would pass it is answered 429 with Retry-After
     * before it is read, while other users' bodies still fit. At least 1 MiB (the largest body the
     * budget covers), at most 2 GiB (above the budget it never binds); default a quarter of the
     * budget, at least 1 MiB (16 MiB with the default budget: 16 bodies of 1 MiB at once).
     */
    ADMIN_BODY_BUDGET_PER_USER_BYTES: optionalInt(MiB, 2048 * MiB),
    /**
     * Milliseconds a request's body may go without a byte arriving (an idle timeout, as nginx's
     * client_body_timeout: a stalled sender holds its share of ADMIN_BODY_BUDGET_BYTES, or its slot,
     * this long at most; a slow but steady one is not cut): 408 REQUEST_TIMEOUT; default 60000. The
     * whole request (Node's requestTimeout) has 300 s.
     */
    ADMIN_BODY_TIMEOUT_MS: int(60_000, 100, 600_000),
    /**
     * /trpc requests one session may have in progress at once in this process, each counted until it
     * is answered (or its client gone) and its session lookup and procedure have settled (a live feed
     * only until its lookup has: LIVE_FEED_MAX_PER_SESSION caps open ones): one more is answered 429
     * with Retry-After before its session is looked up or its body read; default 16 (a browser opens
     * at most 6 connections to a site).
     */
    ADMIN_SESSION_MAX_IN_FLIGHT: int(16, 1, 10_000),
    /** Seconds a collector command waits for a heartbeat before it expires undelivered; default 86400 (24 h). */
    COMMAND_TTL_SECONDS: int(86_400, 1, 30 * 86_400),
    /** Undelivered, unexpired commands one collector may have before sendCommand refuses more; default 100. */
    COMMAND_MAX_PENDING: int(100, 1, 10_000),
    /** Live feeds (`live.collectorStatus` streams) one session may have open at once; default 5. */
    LIVE_FEED_MAX_PER_SESSION: int(5, 1, 1000),
    /** Live feeds one user may have open at once, all sessions together, in this process; default 20. */
    LIVE_FEED_MAX_PER_USER: int(20, 1, 10_000),
    /** Live feeds this process serves at once, all users together; default 200. */
    LIVE_FEED_MAX_SUBSCRIBERS: int(200, 1, 100_000),
    /** How often the sessions of open live feeds are read again (a feed of a session gone ends), in ms; default 30000. */
    LIVE_FEED_SESSION_CHECK_MS: int(30_000, 100, 3_600_000),
    /** Milliseconds a live feed ended by the service gets to read the reason before its connection is closed; default 10000. */
    LIVE_FEED_CUTOFF_GRACE_MS: int(10_000, 100, 600_000),
  })
  .transform(({ MAX_BODY_BYTES, ADMIN_MAX_BODY_BYTES, ADMIN_BODY_BUDGET_PER_USER_BYTES, ...config }) => ({
    ...config,
    ADMIN_MAX_BODY_BYTES: ADMIN_MAX_BODY_BYTES ?? Math.min(MAX_BODY_BYTES ?? 32 * MiB, 512 * MiB),
    ADMIN_BODY_BUDGET_PER_USER_BYTES:
      ADMIN_BODY_BUDGET_PER_USER_BYTES ?? Math.max(MiB, Math.floor(config.ADMIN_BODY_BUDGET_BYTES / 4)),
  }));
export type AdminConfig = z.infer<typeof AdminConfigSchema>;

export const readAdminConfig = (env: Record<string, string | undefined> = process.env): AdminConfig =>
  loadConfig(AdminConfigSchema, env);
