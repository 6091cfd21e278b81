import {
  CollectorConfigSchema,
  EnrollAnswerSchema,
  HeartbeatAnswerSchema,
  RefreshTokenAnswerSchema,
  type CollectorConfig,
  type HeartbeatAnswer,
  type HeartbeatBody,
} from '@pga/contracts';

/** Outcome of one HTTP exchange with the central; never throws for HTTP or network failures. */
export type CentralResult<T> =
  { ok: true; status: number; body: T } | { ok: false; status: number; code: string; message: string; retryAfterMs?: number };

/** The edge's answer to any request of a collector an admin disabled (CONTRACT.md: 403 COLLECTOR_DISABLED). */
export const isDisabledAnswer = (res: { ok: boolean; status: number; code?: string }): boolean =>
  !res.ok && res.status === 403 && res.code === 'COLLECTOR_DISABLED';

export interface Credentials {
  collectorId: string;
  token: string;
}

export interface CentralClient {
  push(gzipped: Buffer, pushId: string): Promise<CentralResult<{ records?: number; duplicate?: boolean }>>;
  heartbeat(body: HeartbeatBody): Promise<CentralResult<HeartbeatAnswer>>;
  config(): Promise<CentralResult<CollectorConfig>>;
  refreshToken(): Promise<CentralResult<{ token: string; expires_at: string }>>;
  health(): Promise<CentralResult<unknown>>;
}

/** Retry-After as seconds or an HTTP date → ms (undefined when absent or unreadable). */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

async function exchange<T>(
  url: string,
  init: RequestInit,
  timeoutMs: number,
  parse: (json: unknown) => T,
): Promise<CentralResult<T>> {
  let res: Response;
  try {
    res = await fetch(url, { ...init, signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    const e = err as Error & { cause?: { code?: string; message?: string } };
    const cause = [e.cause?.code, e.cause?.message].filter(Boolean).join(' ');
    const detail = e.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : cause || e.message;
    return { ok: false, status: 0, code: 'NETWORK', message: `${new URL(url).host}: ${detail}` };
  }
  const text = await res.text().catch(() => '');
  let json: unknown;
  try {
    json = text ? JSON.parse(text) : undefined;
  } catch {
    json = undefined;
  }
  if (res.status === 200 || res.status === 201) {
    try {
      return { ok: true, status: res.status, body: parse(json) };
    } catch (err) {
      return {
        ok: false,
        status: res.status,
        code: 'BAD_ANSWER',
        message: `unexpected answer: ${(err as Error).message.slice(0, 200)}`,
      };
    }
  }
  const error = (json as { error?: { code?: string; message?: string } } | undefined)?.error;
  return {
    ok: false,
    status: res.status,
    code: error?.code ?? `HTTP_${res.status}`,
    message: error?.message ?? (text.slice(0, 200) || res.statusText),
    retryAfterMs: parseRetryAfter(res.headers.get('retry-after')),
  };
}

/**
 * The slowest upload a push is given time for, bytes/s: over a link this slow (a quarter of a
 * 128 kbit/s uplink), a push's timeout is COLLECTOR_HTTP_TIMEOUT_MS plus its upload time. A whole
 * request within COLLECTOR_HTTP_TIMEOUT_MS alone aborted every push over ~180 KiB on a 100 kbit/s
 * link, retried for ever; the edge keeps a body arriving faster than 1 KiB/s.
 */
export const PUSH_MIN_UPLOAD_BYTES_PER_S = 4096;

/** A push's timeout: the base plus its gzipped body's upload time at PUSH_MIN_UPLOAD_BYTES_PER_S. */
export const pushTimeoutMs = (timeoutMs: number, bytes: number) =>
  timeoutMs + Math.ceil((bytes * 1000) / PUSH_MIN_UPLOAD_BYTES_PER_S);

/**
 * The collector's side of CONTRACT.md. `credentials()` is read on every call, so a refreshed token
 * is used from the next request on.
 */
export function createCentralClient({
  baseUrl,
  credentials,
  timeoutMs,
}: {
  baseUrl: string;
  credentials: () => Credentials;
  timeoutMs: number;
}): CentralClient {
  const base = baseUrl.replace(/\/+$/, '');
  const auth = () => {
    const c = credentials();
    return { authorization: `Bearer ${c.token}`, 'x-collector-id': c.collectorId };
  };
  const id = () => encodeURIComponent(credentials().collectorId);
  return {
    push: (gzipped, pushId) =>
      exchange(
        `${base}/api/v1/metrics/push`,
        {
          method: 'POST',
          headers: { ...auth(), 'content-type': 'application/json', 'content-encoding': 'gzip', 'idempotency-key': pushId },
          body: Uint8Array.from(gzipped),
        },
        pushTimeoutMs(timeoutMs, gzipped.length),
        (j) => (j ?? {}) as { records?: number; duplicate?: boolean },
      ),
    heartbeat: (body) =>
      exchange(
        `${base}/api/v1/collectors/${id()}/heartbeat`,
        { method: 'POST', headers: { ...auth(), 'content-type': 'application/json' }, body: JSON.stringify(body) },
        timeoutMs,
        (j) => HeartbeatAnswerSchema.parse(j),
      ),
    config: () =>
      exchange(`${base}/api/v1/collectors/${id()}/config`, { headers: auth() }, timeoutMs, (j) => CollectorConfigSchema.parse(j)),
    refreshToken: () =>
      exchange(`${base}/api/v1/collectors/refresh-token`, { method: 'POST', headers: auth() }, timeoutMs, (j) =>
        RefreshTokenAnswerSchema.parse(j),
      ),
    health: () => exchange(`${base}/healthz`, {}, timeoutMs, (j) => j),
  };
}

/** `POST /api/v1/collectors/register` with an enrollment secret (no token yet). */
export function enroll(
  baseUrl: string,
  secret: string,
  body: { name: string; hostname: string; version?: string },
  timeoutMs: number,
) {
  return exchange(
    `${baseUrl.replace(/\/+$/, '')}/api/v1/collectors/register`,
    {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-registration-secret': secret },
      body: JSON.stringify(body),
    },
    timeoutMs,
    (j) => EnrollAnswerSchema.parse(j),
  );
}
