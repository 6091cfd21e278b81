import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { connect } from 'node:net';
import path from 'node:path';
import { Queue } from 'bullmq';
import { SignJWT, decodeJwt } from 'jose';
import { expect } from 'vitest';
import { Redis } from 'ioredis';
import pg from 'pg';
import { createSecretBox } from '@pga/crypto';
import { recordIssuedToken } from '@pga/db';
import {
  exitedAtStart,
  freePort,
  GiveUp,
  outputTail,
  spawnServer,
  startOnFreePort,
  waitFor,
  waitForProcesses,
} from '@pga/local-stack';
import { createLogger, type Logger } from '@pga/logger';
import { redisKeys, type RedisKeys } from '@pga/redis-keys';
import { createCollectorTokens, hashToken, type CollectorTokens, type IssuedToken } from '@pga/tokens';
import type { PushItem, PushJob } from '@pga/contracts';
import { createEdge, readEdgeConfig, type Edge } from '@pga/ingest-edge';
import { createTestDatabase, testEnv, uniquePrefix, type TestDatabase } from '../helpers';

const root = path.resolve(import.meta.dirname, '../..');

export const JWT_SECRET = 'edge-test-secret-'.padEnd(48, 'x');
export const ENCRYPTION_KEY = `k1:${Buffer.alloc(32, 7).toString('base64')}`;
export const ISSUER = 'pganalytics-central';
export const AUDIENCE = 'pganalytics-collectors';

export interface TestCollector {
  id: string;
  token: string;
  issued: IssuedToken;
}

/**
 * A suite's world: its own database, Redis prefix, and (optionally several) in-process edges.
 * Collectors are inserted with plain SQL and their tokens minted with @pga/tokens +
 * recordIssuedToken — the same code path the admin service uses.
 */
export class EdgeWorld implements AsyncDisposable {
  readonly tokens: CollectorTokens = createCollectorTokens({ secret: JWT_SECRET, issuer: ISSUER, audience: AUDIENCE });
  readonly box = createSecretBox(ENCRYPTION_KEY);
  readonly keys: RedisKeys;
  readonly redis: Redis;
  readonly queue: Queue<PushJob>;
  private readonly edges: Edge[] = [];

  private constructor(
    readonly db: TestDatabase,
    readonly pool: pg.Pool,
    readonly prefix: string,
    readonly redisUrl: string,
  ) {
    this.keys = redisKeys(prefix);
    this.pool.on('error', () => undefined);
    this.redis = new Redis(redisUrl, { maxRetriesPerRequest: 1, retryStrategy: (n) => Math.min(n * 100, 500) });
    this.redis.on('error', () => undefined);
    this.queue = new Queue<PushJob>(this.keys.pushQueue, { connection: this.redis, prefix: this.keys.bullPrefix });
    this.queue.on('error', () => undefined);
  }

  static async create({ redisUrl = testEnv.redisUrl }: { redisUrl?: string } = {}): Promise<EdgeWorld> {
    const db = await createTestDatabase();
    return new EdgeWorld(db, new pg.Pool({ connectionString: db.url, max: 3 }), uniquePrefix('edge'), redisUrl);
  }

  env(overrides: Record<string, string> = {}): Record<string, string> {
    return {
      DATABASE_URL: this.db.url,
      REDIS_URL: this.redisUrl,
      JWT_SECRET,
      ENCRYPTION_KEY,
      INGEST_PORT: '0',
      INGEST_HOST: '127.0.0.1',
      REDIS_KEY_PREFIX: this.prefix,
      EDGE_PROCESSES: '1',
      LOG_LEVEL: 'silent',
      ...overrides,
    };
  }

  /** Starts an edge in this process and waits until it is ready (or, with `waitReady` false, only listening). */
  async startEdge(overrides: Record<string, string> = {}, logger?: Logger, waitReady = true): Promise<Edge & { url: string }> {
    const config = readEdgeConfig(this.env(overrides));
    const edge = await createEdge({
      config,
      logger: logger ?? createLogger({ name: 'edge-test', level: config.LOG_LEVEL, pretty: false }),
    });
    this.edges.push(edge);
    const url = `http://127.0.0.1:${edge.port}`;
    if (waitReady) await waitUntil(async () => (await fetch(`${url}/readyz`)).status === 200, 10_000, 'edge ready');
    return Object.assign(edge, { url });
  }

  /** Inserts a collector (plain SQL, password encrypted with the shared box) and mints its token. */
  async collector({ enabled = true, ttlSeconds }: { enabled?: boolean; ttlSeconds?: number } = {}): Promise<TestCollector> {
    const id = randomUUID();
    await this.pool.query(
      `INSERT INTO collectors (id, name, type, environment, host, port, database, username, password_encrypted, ssl_mode, enabled, config_version)
       VALUES ($1, $2, 'postgresql', 'production', 'db.internal', 5433, 'app', 'monitor', $3, 'require', $4, 3)`,
      [id, `c-${id.slice(0, 8)}`, this.box.encrypt('s3cret "pw"', id), enabled],
    );
    const issued = await this.mint(id, ttlSeconds);
    return { id, token: issued.token, issued };
  }

  async mint(id: string, ttlSeconds?: number): Promise<IssuedToken> {
    const issued = await this.tokens.issue(id, ttlSeconds ? { ttlSeconds } : {});
    await recordIssuedToken(this.pool, id, issued);
    return issued;
  }

  /**
   * Every push in the queue (waiting jobs), flattened; v2 bodies decoded to their text, v3 (large)
   * bodies read from their blob in Redis.
   */
  async queuedPushes(): Promise<PushItem[]> {
    const jobs = await this.queue.getJobs(['waiting', 'prioritized', 'delayed', 'active', 'paused']);
    const pushes: PushItem[] = [];
    for (const { data } of jobs) {
      if (data.v === 1) pushes.push(...data.pushes);
      else
        for (const p of data.pushes) {
          if ('body_base64' in p) {
            const { body_base64, ...rest } = p;
            pushes.push({ ...rest, body: Buffer.from(body_base64, 'base64').toString('utf8') });
          } else {
            const { body_ref, ...rest } = p;
            const fields = Array.from({ length: body_ref.pieces }, (_, i) => String(i));
            const pieces = await this.redis.hmgetBuffer(body_ref.key, ...fields);
            pushes.push({ ...rest, body: Buffer.concat(pieces.map((b) => b ?? Buffer.alloc(0))).toString('utf8') });
          }
        }
    }
    return pushes;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await Promise.all(this.edges.map((e) => e.drain().catch(() => undefined)));
    await this.queue.obliterate({ force: true }).catch(() => undefined);
    await this.queue.close().catch(() => undefined);
    this.redis.disconnect();
    await this.pool.end();
    await this.db.drop();
  }
}

export async function waitUntil(check: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** Interim 1xx status lines seen before the final answer. */
  interim: number[];
  /** True when the server closed the connection after answering. */
  closed: boolean;
}

/**
 * HTTP/1.1 over a bare socket, for what fetch cannot express: chunked bodies written piece by
 * piece, `Expect: 100-continue` handshakes, lying or missing Content-Length. `parts` are written in
 * order; a function part is awaited in between (e.g. to wait for "100 Continue").
 */
export function rawRequest(port: number, parts: (string | Buffer | ((r: RawSession) => Promise<void>))[]): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const session: RawSession = {
      received: () => data.toString('latin1'),
      write: (chunk) =>
        new Promise<void>((res) => {
          if (socket.destroyed || !socket.writable) return res();
          socket.write(chunk, () => res());
        }),
      waitFor: (text, ms = 5000) => waitUntil(() => data.toString('latin1').includes(text), ms, JSON.stringify(text)),
    };
    let result: RawResponse | undefined;
    const timer = setTimeout(
      () => (socket.destroy(), reject(new Error(`no complete answer: ${data.toString('latin1').slice(0, 500)}`))),
      15_000,
    );
    let partsDone: Promise<void> = Promise.resolve();
    const tryParse = (closed: boolean, why?: string) => {
      const parsed = parseResponse(data, closed);
      // Closed or reset with no complete answer: none can come any more; say so now, and how.
      if (!parsed && closed && !result) {
        clearTimeout(timer);
        socket.destroy();
        return reject(new Error(`connection ${why} before a complete answer: ${data.toString('latin1').slice(0, 500)}`));
      }
      if (parsed && !result) {
        result = parsed;
        // Let the remaining parts run, then give the server a moment to close (or not).
        void partsDone.then(() =>
          setTimeout(() => {
            clearTimeout(timer);
            result!.closed = socket.readableEnded || socket.destroyed;
            socket.destroy();
            resolve(result!);
          }, 100),
        );
      }
    };
    socket.on('data', (chunk) => {
      data = Buffer.concat([data, chunk]);
      tryParse(false);
    });
    socket.on('end', () => tryParse(true, 'closed by the server'));
    socket.on('error', (err: NodeJS.ErrnoException) => tryParse(true, `failed (${err.code ?? err.message})`));
    socket.once('connect', () => {
      partsDone = (async () => {
        try {
          for (const part of parts) {
            if (typeof part === 'function') await part(session);
            else if (!socket.destroyed && socket.writable) socket.write(part);
          }
        } catch (err) {
          clearTimeout(timer);
          socket.destroy();
          reject(err instanceof Error ? err : new Error(String(err)));
        }
      })();
    });
  });
}

/** Writes `data` on a fresh connection, waits `ms`, then destroys the socket without reading an answer. */
export async function hangUp(port: number, data: string | Buffer, ms = 100): Promise<void> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => undefined);
  await new Promise<void>((resolve) => socket.once('connect', resolve));
  await new Promise<void>((resolve) => socket.write(data, () => resolve()));
  await new Promise((r) => setTimeout(r, ms));
  socket.destroy();
}

export interface RawSession {
  received(): string;
  /** Writes and resolves once flushed (or at once when the socket is gone). */
  write(data: string | Buffer): Promise<void>;
  waitFor(text: string, ms?: number): Promise<void>;
}

function parseResponse(data: Buffer, closed: boolean): RawResponse | undefined {
  let text = data.toString('latin1');
  const interim: number[] = [];
  for (;;) {
    const end = text.indexOf('\r\n\r\n');
    if (end === -1) return undefined;
    const [statusLine, ...lines] = text.slice(0, end).split('\r\n');
    const status = Number(statusLine!.split(' ')[1]);
    if (status >= 100 && status < 200) {
      interim.push(status);
      text = text.slice(end + 4);
      continue;
    }
    const headers: Record<string, string> = {};
    for (const line of lines) {
      const i = line.indexOf(':');
      headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const rest = text.slice(end + 4);
    const length = headers['content-length'] !== undefined ? Number(headers['content-length']) : undefined;
    if (length !== undefined ? Buffer.byteLength(rest, 'latin1') < length : !closed) return undefined;
    const body = Buffer.from(length !== undefined ? rest.slice(0, length) : rest, 'latin1').toString('utf8');
    return { status, headers, body, interim, closed };
  }
}

/** `fetch` with a bearer token, returning status, headers and parsed JSON (or text). */
export async function call(
  url: string,
  {
    token,
    method = 'POST',
    body,
    headers = {},
  }: { token?: string; method?: string; body?: string | Buffer; headers?: Record<string, string> },
): Promise<{ status: number; headers: Headers; json: any; text: string }> {
  const res = await fetch(url, {
    method,
    headers: {
      ...(token ? { authorization: `Bearer ${token}` } : {}),
      ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
      ...headers,
    },
    ...(body !== undefined ? { body: typeof body === 'string' ? body : new Uint8Array(body) } : {}),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, json, text };
}

export interface EdgeProcess extends AsyncDisposable {
  url: string;
  port: number;
  child: ChildProcess;
  output(): string;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
}

/** Runs the real `services/ingest-edge/src/main.ts` as a child process (what `npm start` runs). */
export async function spawnEdge(env: Record<string, string>, { waitReady = true } = {}): Promise<EdgeProcess> {
  const port = Number(env.INGEST_PORT) || (await freePort());
  const child = spawn(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'services/ingest-edge/src/main.ts')], {
    cwd: root,
    env: { PATH: process.env.PATH, ...env, INGEST_PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const url = `http://127.0.0.1:${port}`;
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    return exited;
  };
  try {
    // /readyz: every process of a multi-process edge (each fresh connection reaches one of them).
    await waitForProcesses(port, waitReady ? '/readyz' : '/healthz', {
      check: () => {
        if (child.exitCode !== null) throw new GiveUp(`edge exited with code ${child.exitCode}: ${out}`);
      },
    });
  } catch (err) {
    await stop();
    throw new Error(`${(err as Error).message}\n${out}`, { cause: err });
  }
  return { url, port, child, output: () => out, stop, [Symbol.asyncDispose]: async () => void (await stop()) };
}

/** One request on a fresh connection (so SO_REUSEPORT may pick any edge process). */
export function freshRequest(
  port: number,
  method: string,
  pathname: string,
  headers: Record<string, string> = {},
  body = '',
): Promise<RawResponse> {
  const lines = [
    `${method} ${pathname} HTTP/1.1`,
    'Host: edge',
    'Connection: close',
    `Content-Length: ${Buffer.byteLength(body)}`,
  ];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  return rawRequest(port, [`${lines.join('\r\n')}\r\n\r\n${body}`]);
}

/** A redis-server of a test's own whose file writes can be made to fail (`fsize`), and a client of it. */
export interface FailingDiskRedis {
  child: ChildProcess;
  url: string;
  dir: string;
  admin: Redis;
  /** Lowers (or, with 'unlimited', lifts) the size of a file Redis may write: past it, writes fail with EFBIG. */
  fsize(limit: string): void;
  stop(): void;
}

/**
 * Starts redis-server with `args` under SIGXFSZ ignored (through bash: an ignored signal stays
 * ignored across exec and in a save's fork), so that a file-size limit set with `prlimit` makes its
 * writes fail with EFBIG instead of killing it: a full disk, as Redis sees one. Resolves once it
 * answers PING and is this child (INFO's process_id: bash exec'd it), on another port when its
 * port was taken (startOnFreePort; a PING answered by another process's Redis passed for it).
 */
export async function startFailingDiskRedis(name: string, args: string[]): Promise<FailingDiskRedis> {
  const dir = path.join(testEnv.dataDir, uniquePrefix(name));
  mkdirSync(dir, { recursive: true });
  const logFile = path.join(dir, 'redis.log');
  return startOnFreePort(async (port) => {
    const child = spawnServer(
      'bash',
      [
        '-c',
        `trap '' XFSZ; exec redis-server "$@"`,
        'redis',
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--dir',
        dir,
        ...args,
      ],
      logFile,
    );
    let exited = false;
    child.once('close', () => (exited = true));
    const url = `redis://127.0.0.1:${port}`;
    const admin = new Redis(url, { maxRetriesPerRequest: 1 });
    admin.on('error', () => undefined);
    const stop = () => {
      admin.disconnect();
      child.kill('SIGKILL');
    };
    try {
      await waitFor(`Redis on 127.0.0.1:${port} (log: ${logFile})`, async () => {
        if (exited) throw exitedAtStart('redis-server', port, logFile, (lines) => outputTail(child, lines));
        if ((await admin.ping().catch(() => '')) !== 'PONG') return false;
        const pid = Number(/^process_id:(\d+)/m.exec(await admin.info('server'))?.[1]);
        if (pid !== child.pid) throw new Error(`the Redis answering is pid ${pid}, not redis-server's ${child.pid}`);
        return true;
      });
    } catch (err) {
      stop();
      throw err;
    }
    return {
      child,
      url,
      dir,
      admin,
      fsize: (limit) => expect(spawnSync('prlimit', ['--pid', String(child.pid), `--fsize=${limit}:unlimited`]).status).toBe(0),
      stop,
    };
  });
}

/**
 * A token as every token before key ids was (no `kid`, signed with the one secret `secret`, an hour
 * long), recorded in collector_tokens with no key id, as migration 0045 left those: a refresh
 * checks its jti is on record.
 */
export async function legacyCollectorToken(db: pg.Pool, secret: string, collectorId: string): Promise<string> {
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ type: 'collector', collector_id: collectorId })
    .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
    .setSubject(collectorId)
    .setIssuer(ISSUER)
    .setAudience(AUDIENCE)
    .setIssuedAt(now)
    .setNotBefore(now - 60)
    .setExpirationTime(now + 3600)
    .setJti(randomUUID())
    .sign(new TextEncoder().encode(secret));
  await db.query(
    `INSERT INTO collector_tokens (jti, collector_id, token_hash, issued_at, expires_at, key_id)
     VALUES ($1, $2, $3, to_timestamp($4), to_timestamp($5), NULL)`,
    [decodeJwt(token).jti, collectorId, hashToken(token), now - 10, now + 3600],
  );
  return token;
}
