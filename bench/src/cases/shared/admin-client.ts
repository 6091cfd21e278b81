import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { hashSecret } from '@pga/crypto';
import { createPool } from '@pga/db';
import { freePort } from '@pga/local-stack';
import type { ScenarioContext } from '../../harness/scenario';
import { REPO_ROOT } from '../../harness/stack';

const SERVICE = 'admin-api';

/** A signed-in tRPC-over-HTTP client of the admin service (what the web UI does). */
export interface AdminClient {
  url: string;
  query<T = unknown>(procedure: string, input?: unknown): Promise<{ status: number; data?: T }>;
  mutation<T = unknown>(procedure: string, input?: unknown): Promise<{ status: number; data?: T }>;
}

export function adminMissing(): string | undefined {
  return existsSync(path.join(REPO_ROOT, 'services/admin-api/src/routers/collectors/register.ts'))
    ? undefined
    : 'needs the admin service (collectors.register not built yet)';
}

/** Starts the admin service once per bench, creates a bench admin account and signs in. */
export async function adminClient(ctx: ScenarioContext): Promise<AdminClient> {
  const cached = ctx.shared.get('admin-client') as AdminClient | undefined;
  if (cached && ctx.stack.services.has(SERVICE)) return cached;
  const password = randomBytes(18).toString('base64url');
  const pool = createPool(ctx.stack.databaseUrl, { max: 1, applicationName: 'bench-setup' });
  try {
    await pool.query(
      `INSERT INTO users (username, display_name, password_hash, role) VALUES ('bench-admin', 'Bench', $1, 'admin')
       ON CONFLICT ((lower(username))) DO UPDATE SET password_hash = EXCLUDED.password_hash`,
      [await hashSecret(password)],
    );
  } finally {
    await pool.end();
  }
  if (!ctx.stack.services.has(SERVICE)) {
    const port = await freePort();
    await ctx.stack.startService(SERVICE, {
      entry: 'services/admin-api/src/main.ts',
      port,
      env: { ...ctx.stack.baseEnv(), ADMIN_PORT: String(port), ADMIN_HOST: '127.0.0.1' },
    });
  }
  const url = ctx.stack.services.get(SERVICE)!.url;
  let cookie = '';
  const call = async <T>(method: 'GET' | 'POST', procedure: string, input: unknown) => {
    const target =
      method === 'GET'
        ? `${url}/trpc/${procedure}${input === undefined ? '' : `?input=${encodeURIComponent(JSON.stringify(input))}`}`
        : `${url}/trpc/${procedure}`;
    const res = await fetch(target, {
      method,
      headers: {
        origin: url,
        ...(cookie ? { cookie } : {}),
        ...(method === 'POST' ? { 'content-type': 'application/json' } : {}),
      },
      ...(method === 'POST' ? { body: JSON.stringify(input ?? {}) } : {}),
    });
    const setCookie = res.headers.get('set-cookie');
    if (setCookie) cookie = setCookie.split(';')[0]!;
    const json = (await res.json().catch(() => undefined)) as { result?: { data?: T } } | undefined;
    return { status: res.status, ...(json?.result ? { data: json.result.data as T } : {}) };
  };
  const client: AdminClient = {
    url,
    query: (p, input) => call('GET', p, input),
    mutation: (p, input) => call('POST', p, input),
  };
  const login = await client.mutation('auth.login', { username: 'bench-admin', password });
  if (login.status !== 200 || !cookie) throw new Error(`bench admin could not sign in (HTTP ${login.status})`);
  ctx.shared.set('admin-client', client);
  return client;
}

export async function stopAdmin(ctx: ScenarioContext): Promise<void> {
  ctx.shared.delete('admin-client');
  await ctx.stack.stopService(SERVICE);
}

/** A valid collectors.register input for a bench collector named `name`. */
export function registerInput(name: string) {
  return {
    name,
    type: 'postgresql',
    environment: 'production',
    host: `db-${name}.example`,
    port: 5432,
    database: 'app',
    username: 'monitor',
    password: 'bench-password',
    tags: ['bench'],
  };
}
