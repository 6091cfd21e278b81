import { request } from 'node:http';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { Redis } from 'ioredis';
import { startRedis, startOnFreePort } from '@pga/local-stack';
import { hashSecret } from '@pga/crypto';
import { createLogger } from '@pga/logger';
import {
  createAdminService,
  createCallerFactory,
  appRouter,
  readAdminConfig,
  type AdminService,
  type Context,
  type SessionUser,
} from '@pga/admin-api';
import { createTestDatabase, testEnv, uniquePrefix, type TestDatabase } from '../helpers';

export const ADMIN_PASSWORD = 'correct horse battery staple';
export const VIEWER_PASSWORD = 'viewer password 123';

export interface Harness extends AsyncDisposable {
  db: TestDatabase;
  service: AdminService;
  admin: SessionUser;
  viewer: SessionUser;
  /** A createCaller bound to a user (or anonymous), with captured Set-Cookie headers. */
  caller(user: SessionUser | null, extra?: Partial<Context>): ReturnType<typeof createCaller>;
  /** Base URL once `listen()` ran. */
  url: string;
  listen(): Promise<string>;
}

const createCaller = createCallerFactory(appRouter);

async function insertUser(
  service: AdminService,
  username: string,
  password: string,
  role: 'admin' | 'viewer',
): Promise<SessionUser> {
  const { rows } = await service.deps.pool.query<SessionUser>(
    `INSERT INTO users (username, display_name, password_hash, role) VALUES ($1, $1, $2, $3)
     RETURNING id, username, display_name, role`,
    [username, await hashSecret(password), role],
  );
  return rows[0]!;
}

/** A fresh database, its own Redis prefix, an admin service (not yet listening), an admin and a viewer. */
export async function createHarness(env: Record<string, string> = {}): Promise<Harness> {
  const db = await createTestDatabase();
  const config = readAdminConfig({
    DATABASE_URL: db.url,
    REDIS_URL: testEnv.redisUrl,
    REDIS_KEY_PREFIX: uniquePrefix('admin'),
    JWT_SECRET: randomBytes(40).toString('base64url'),
    ENCRYPTION_KEY: `k1:${randomBytes(32).toString('base64')}`,
    ADMIN_PORT: '0',
    ADMIN_HOST: '127.0.0.1',
    CENTRAL_API_URL: 'http://127.0.0.1:18080',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const service = createAdminService({ config, logger: createLogger({ name: 'admin-test', level: 'silent', pretty: false }) });
  const [admin, viewer] = await Promise.all([
    insertUser(service, 'alice', ADMIN_PASSWORD, 'admin'),
    insertUser(service, 'victor', VIEWER_PASSWORD, 'viewer'),
  ]);
  const harness: Harness = {
    db,
    service,
    admin,
    viewer,
    url: '',
    caller(user, extra = {}) {
      return callerOf(service, user, extra);
    },
    async listen() {
      const port = await service.listen();
      harness.url = `http://127.0.0.1:${port}`;
      return harness.url;
    },
    async [Symbol.asyncDispose]() {
      await service.close();
      await db.drop();
    },
  };
  return harness;
}

/** A tRPC caller of `service` as `user` (null: signed out), from 127.0.0.1 (`h.caller` for the harness's own service). */
export function callerOf(
  service: AdminService,
  user: Parameters<Harness['caller']>[0],
  extra: Parameters<Harness['caller']>[1] = {},
) {
  return createCaller({
    deps: service.deps,
    user,
    sessionHash: null,
    ip: '127.0.0.1',
    userAgent: 'vitest',
    secureCookies: false,
    setCookie: () => undefined,
    ...extra,
  });
}

/**
 * Another admin service on `h`'s database, Redis and prefix, with `env` over `h`'s settings: what a
 * restart with another `ENCRYPTION_KEY` gives. Logs to `logger` (default: nowhere).
 */
export function restartedService(
  h: Harness,
  env: Record<string, string>,
  logger = createLogger({ name: 'admin-test', level: 'silent', pretty: false }),
): AdminService & AsyncDisposable {
  const c = h.service.deps.config;
  const config = readAdminConfig({
    DATABASE_URL: c.DATABASE_URL,
    REDIS_URL: c.REDIS_URL,
    REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
    JWT_SECRET: c.JWT_SECRET,
    ENCRYPTION_KEY: c.ENCRYPTION_KEY,
    ADMIN_PORT: '0',
    ADMIN_HOST: '127.0.0.1',
    ...env,
  });
  const service = createAdminService({ config, logger });
  return Object.assign(service, { [Symbol.asyncDispose]: () => service.close() });
}

/** GET with headers of our choosing, Host included (fetch does not let us set it): the Host check's tests. */
export function getWithHeaders(
  url: string,
  p: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: p, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode!, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** POST/GET helper for /trpc over HTTP (non-batched), sending the same-origin Origin by default. */
export async function trpcHttp(
  baseUrl: string,
  kind: 'query' | 'mutation',
  path: string,
  input?: unknown,
  { cookie, headers = {} }: { cookie?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; text: string; setCookie: string[]; headers: Headers }> {
  const common: Record<string, string> = { ...(cookie ? { cookie } : {}) };
  let res: Response;
  if (kind === 'query') {
    const qs = input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`;
    res = await fetch(`${baseUrl}/trpc/${path}${qs}`, { headers: { ...common, ...headers } });
  } else {
    res = await fetch(`${baseUrl}/trpc/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: baseUrl, ...common, ...headers },
      body: input === undefined ? '' : JSON.stringify(input),
    });
  }
  const text = await res.text();
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  return { status: res.status, body, text, setCookie: res.headers.getSetCookie(), headers: res.headers };
}

/** Signs in over HTTP and returns the `name=value` cookie to send back. */
export async function httpLogin(baseUrl: string, username: string, password: string): Promise<string> {
  const res = await trpcHttp(baseUrl, 'mutation', 'auth.login', { username, password });
  if (res.status !== 200) throw new Error(`login failed: ${res.status} ${res.text}`);
  return res.setCookie[0]!.split(';')[0]!;
}

/** An edge's environment for the admin service of `h` (same database, Redis prefix and keys), on `redisUrl`. */
export function edgeEnvOf(h: Harness, redisUrl: string, logLevel = 'warn'): Record<string, string> {
  const config = h.service.deps.config;
  return {
    DATABASE_URL: config.DATABASE_URL,
    REDIS_URL: redisUrl,
    REDIS_KEY_PREFIX: config.REDIS_KEY_PREFIX,
    JWT_SECRET: config.JWT_SECRET,
    ENCRYPTION_KEY: config.ENCRYPTION_KEY,
    INGEST_HOST: '127.0.0.1',
    EDGE_PROCESSES: '1',
    LOG_LEVEL: logLevel,
  };
}

/**
 * An admin service on a Redis of its own (a test that refuses writes, flushes or stops it touches no
 * other suite), with a client of that Redis; `close()` stops all of it.
 */
export async function harnessOnOwnRedis(label: string): Promise<{
  h: Harness;
  redisUrl: string;
  redis: Redis;
  close(): Promise<void>;
}> {
  const server = await startOnFreePort((port) => startRedis({ dataDir: path.join(testEnv.dataDir, uniquePrefix(label)), port }));
  const h = await createHarness({ REDIS_URL: server.url });
  const redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  redis.on('error', () => undefined);
  return {
    h,
    redisUrl: server.url,
    redis,
    async close() {
      await redis.config('SET', 'maxmemory', '0').catch(() => undefined);
      redis.disconnect();
      await h.service.close().catch(() => undefined);
      await h.db.drop();
      await server.stop();
    },
  };
}
