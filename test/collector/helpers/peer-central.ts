import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { gunzipSync } from 'node:zlib';
import type { CollectorConfig } from '@pga/contracts';
import { createCollectorTokens } from '@pga/tokens';

export interface ReceivedPush {
  pushId: string;
  /** The decompressed body exactly as received. */
  text: string;
  envelope: { push_id: string; timestamp: string; collector_id: string; metrics: { type: string }[] };
  at: number;
}

export type Override = { status: number; headers?: Record<string, string>; body?: unknown } | 'hang';

/**
 * A small real HTTP server speaking the central's side of shared/CONTRACT.md (push, heartbeat,
 * config, refresh-token, register, healthz) with real JWTs from @pga/tokens: the collector's
 * protocol peer until (and besides) the real ingest edge. Tests steer it through `onPush` /
 * `onHeartbeat` overrides, `goDown()` / `comeBack()` (a real closed port) and its recorded state.
 */
export async function startPeerCentral({ tokenTtlSeconds = 3600 }: { tokenTtlSeconds?: number } = {}) {
  const tokens = createCollectorTokens({
    secret: 'peer-central-secret-0123456789abcdef',
    issuer: 'peer',
    audience: 'peer-collectors',
    ttlSeconds: tokenTtlSeconds,
  });
  const collectorId = randomUUID();
  const revoked = new Set<string>();
  const state = {
    collectorId,
    registrationSecret: 'enroll-me',
    config: undefined as CollectorConfig | undefined,
    commands: [] as { id: string; action: 'stop' | 'resume' | 'restart' }[],
    pushes: [] as ReceivedPush[],
    pushAttempts: [] as { at: number; status: number; pushId: string }[],
    heartbeats: [] as { at: number; body: Record<string, unknown> }[],
    refreshes: 0,
    configPulls: 0,
    registered: [] as { name: string; hostname: string }[],
    onPush: undefined as ((pushId: string) => Override | undefined) | undefined,
    /** True: the push's connection is closed as it arrives, body unread and no answer (an edge cutting off a slow upload). */
    cutPush: undefined as ((pushId: string) => boolean) | undefined,
    /** When and which pushes were cut (cutPush). */
    cuts: [] as { at: number; pushId: string }[],
    onHeartbeat: undefined as (() => Override | undefined) | undefined,
  };
  const hanging = new Set<ServerResponse>();

  const send = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers }).end(JSON.stringify(body));
  };
  const error = (res: ServerResponse, status: number, code: string, message: string, headers?: Record<string, string>) =>
    send(res, status, { error: { code, message } }, headers);
  const readBody = (req: IncomingMessage) =>
    new Promise<Buffer>((resolve, reject) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => resolve(Buffer.concat(chunks)));
      req.on('error', reject);
    });
  const authorize = async (req: IncomingMessage) => {
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token) return undefined;
    try {
      const claims = await tokens.verify(token);
      return revoked.has(claims.jti) ? undefined : claims;
    } catch {
      return undefined;
    }
  };
  const apply = (res: ServerResponse, o: Override) => {
    if (o === 'hang') hanging.add(res);
    else send(res, o.status, o.body ?? { error: { code: 'TEST', message: 'steered by the test' } }, o.headers);
  };

  async function handle(req: IncomingMessage, res: ServerResponse) {
    const url = new URL(req.url ?? '/', 'http://peer');
    const pushKey = String(req.headers['idempotency-key'] ?? '');
    if (url.pathname === '/api/v1/metrics/push' && state.cutPush?.(pushKey)) {
      state.cuts.push({ at: Date.now(), pushId: pushKey });
      req.socket.destroy();
      return;
    }
    const body = await readBody(req);
    if (url.pathname === '/healthz') return send(res, 200, { status: 'ok' });
    if (url.pathname === '/api/v1/collectors/register' && req.method === 'POST') {
      if (req.headers['x-registration-secret'] !== state.registrationSecret) return error(res, 401, 'UNAUTHORIZED', 'bad secret');
      const input = JSON.parse(body.toString()) as { name: string; hostname: string };
      state.registered.push(input);
      const issued = await tokens.issue(collectorId);
      return send(res, 200, {
        collector_id: collectorId,
        token: issued.token,
        expires_at: issued.expiresAt.toISOString(),
        certificate: '',
        private_key: '',
      });
    }
    const claims = await authorize(req);
    if (!claims) return error(res, 401, 'UNAUTHORIZED', 'token missing, invalid or revoked');
    if (url.pathname === '/api/v1/metrics/push' && req.method === 'POST') {
      const key = String(req.headers['idempotency-key'] ?? '');
      const override = state.onPush?.(key);
      if (override) {
        state.pushAttempts.push({ at: Date.now(), status: override === 'hang' ? 0 : override.status, pushId: key });
        return apply(res, override);
      }
      state.pushAttempts.push({ at: Date.now(), status: 200, pushId: key });
      const raw = body[0] === 0x1f && body[1] === 0x8b ? gunzipSync(body) : body;
      const text = raw.toString('utf8');
      let envelope: ReceivedPush['envelope'];
      try {
        envelope = JSON.parse(text);
      } catch {
        return error(res, 400, 'INVALID_JSON', 'not JSON');
      }
      if (envelope.collector_id && envelope.collector_id !== claims.sub)
        return error(res, 403, 'COLLECTOR_MISMATCH', 'not yours');
      const duplicate = state.pushes.some((p) => p.pushId === key);
      if (!duplicate) state.pushes.push({ pushId: key, text, envelope, at: Date.now() });
      return send(res, 200, { status: 'accepted', push_id: key, records: envelope.metrics.length, duplicate });
    }
    if (url.pathname === `/api/v1/collectors/${claims.sub}/heartbeat` && req.method === 'POST') {
      state.heartbeats.push({ at: Date.now(), body: JSON.parse(body.toString() || '{}') });
      const override = state.onHeartbeat?.();
      if (override) return apply(res, override);
      const commands = state.commands.splice(0);
      return send(res, 200, { status: 'ok', config_version: state.config?.config_version ?? 1, commands });
    }
    if (url.pathname === `/api/v1/collectors/${claims.sub}/config` && req.method === 'GET') {
      state.configPulls++;
      return state.config ? send(res, 200, state.config) : error(res, 404, 'NOT_FOUND', 'no config');
    }
    if (url.pathname === '/api/v1/collectors/refresh-token' && req.method === 'POST') {
      state.refreshes++;
      const issued = await tokens.issue(claims.sub);
      return send(res, 200, { token: issued.token, expires_at: issued.expiresAt.toISOString() });
    }
    return error(res, 404, 'NOT_FOUND', 'no such route');
  }

  let server: Server = createServer(
    (req, res) => void handle(req, res).catch((e: Error) => error(res, 500, 'INTERNAL', e.message)),
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  const close = async () => {
    for (const res of hanging) res.destroy();
    hanging.clear();
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  };

  return {
    state,
    url: `http://127.0.0.1:${port}`,
    collectorId,
    issueToken: async (ttlSeconds?: number) => (await tokens.issue(collectorId, ttlSeconds ? { ttlSeconds } : {})).token,
    revokeToken: async (token: string) => revoked.add((await tokens.verify(token)).jti),
    /** The central goes away: the port is closed (connections refused) until comeBack(). */
    goDown: close,
    comeBack: async () => {
      const handler = server.listeners('request')[0] as Parameters<typeof createServer>[0];
      server = createServer(handler);
      await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
    },
    releaseHanging: () => {
      for (const res of hanging) res.destroy();
      hanging.clear();
    },
    [Symbol.asyncDispose]: close,
  };
}
export type PeerCentral = Awaited<ReturnType<typeof startPeerCentral>>;
