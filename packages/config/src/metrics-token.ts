import { createHash, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import { z } from 'zod';

/** Shortest METRICS_TOKEN accepted: `openssl rand -hex 16` writes 32 characters. */
export const METRICS_TOKEN_MIN_LENGTH = 16;

/** RFC 6750 §2.1 b64token: what a Bearer credential may hold (no comma, no space: the list separator). */
const B64TOKEN = /^[A-Za-z0-9\-._~+/]+=*$/;

/**
 * METRICS_TOKEN: unset, empty or blank = `/metrics` open (as before); only commas and spaces (`,`)
 * is refused, not read as no token; else `token` or `new,old` (every
 * token listed is accepted: rotation, as JWT_SECRET's and ENCRYPTION_KEY's lists). Each token
 * `METRICS_TOKEN_MIN_LENGTH`+ characters of RFC 6750's token alphabet. Parsed to the list.
 */
export const metricsTokenSchema = z.object({
  METRICS_TOKEN: z
    .string()
    .optional()
    .transform((value, ctx) => {
      const tokens = (value ?? '')
        .split(',')
        .map((t) => t.trim())
        .filter(Boolean);
      // "," or " , ": meant as a list, yet no token in it — /metrics would be silently open.
      if (tokens.length === 0 && (value ?? '').includes(','))
        ctx.addIssue({
          code: 'custom',
          message:
            'is only commas and spaces: no token in it; unset it (or leave it empty) for an open /metrics, or give a token',
        });
      for (const [i, token] of tokens.entries()) {
        const which = tokens.length > 1 ? `token ${i + 1}` : 'the token';
        if (!B64TOKEN.test(token))
          ctx.addIssue({
            code: 'custom',
            message: `${which} has a character a Bearer token cannot carry (letters, digits and - . _ ~ + / only, = at the end)`,
          });
        else if (token.length < METRICS_TOKEN_MIN_LENGTH)
          ctx.addIssue({
            code: 'custom',
            message: `${which} is ${token.length} characters; at least ${METRICS_TOKEN_MIN_LENGTH} (e.g. \`openssl rand -hex 16\`)`,
          });
      }
      return tokens;
    }),
});

/** Why a `/metrics` request was refused: the first line of the 401's body. */
export type MetricsRefusal = 'missing' | 'scheme' | 'token';

export interface MetricsAuth {
  /**
   * `undefined` when the request may read `/metrics` (no token configured, or the Authorization
   * header carries one of them), else why not.
   */
  check(authorization: string | undefined): MetricsRefusal | undefined;
  /** The 401's WWW-Authenticate (RFC 6750 §3: `error="invalid_token"` only when a Bearer token was sent). */
  challenge(refusal: MetricsRefusal): string;
  /** The 401's body: one line of JSON, the shape of every other error of the services. */
  body(refusal: MetricsRefusal): string;
}

const digest = (text: string) => createHash('sha256').update(text, 'utf8').digest();

const MESSAGES: Record<MetricsRefusal, string> = {
  missing: '/metrics needs an Authorization: Bearer header with a token of METRICS_TOKEN',
  scheme: '/metrics takes only Authorization: Bearer <token> (a token of METRICS_TOKEN)',
  token: 'the Bearer token is not one of METRICS_TOKEN',
};

/**
 * The check of `/metrics`'s Authorization header against METRICS_TOKEN's list. Compared in constant
 * time: SHA-256 of the sent and of each configured token (so their lengths tell nothing), every
 * configured token compared whatever matched before.
 */
export function metricsAuth(tokens: readonly string[]): MetricsAuth {
  const expected = tokens.map(digest);
  return {
    check(authorization) {
      if (expected.length === 0) return undefined;
      const header = (authorization ?? '').trim();
      if (header === '') return 'missing';
      const match = /^bearer[ \t]+(\S+)$/i.exec(header);
      if (!match) return 'scheme';
      const sent = digest(match[1]!);
      let ok = false;
      for (const e of expected) ok = timingSafeEqual(sent, e) || ok;
      return ok ? undefined : 'token';
    },
    challenge: (refusal) => `Bearer realm="pganalytics-metrics"${refusal === 'token' ? ', error="invalid_token"' : ''}`,
    body: (refusal) => JSON.stringify({ error: { code: 'UNAUTHORIZED', message: MESSAGES[refusal] } }),
  };
}

/**
 * True when `host` (a listen address) is reachable only from this machine: 127.0.0.0/8, ::1,
 * `localhost`. The wildcard addresses (0.0.0.0, ::) and every other address are not.
 */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) !== 6) return false;
  // Written any way (0:0:0:0:0:0:0:1, ::ffff:127.0.0.1): as the URL parser writes it.
  const canonical = new URL(`http://[${h}]/`).hostname;
  return canonical === '[::1]' || canonical.startsWith('[::ffff:7f');
}

/**
 * The start-up warning of a service whose `/metrics` anyone reaching its port may read: no
 * METRICS_TOKEN (`tokens` empty), and `host` (the address it listens on) not a loopback address.
 * `port`: which port that is, for the line (e.g. "the collectors' port (INGEST_HOST 0.0.0.0)").
 * Undefined when there is nothing to say. The edge and the writer say it alike.
 */
export function openMetricsWarningFor(tokens: readonly string[], host: string, port: string): string | undefined {
  if (tokens.length > 0 || isLoopbackHost(host)) return undefined;
  return (
    `/metrics is open to anyone who reaches ${port}: ` +
    'set METRICS_TOKEN (`openssl rand -hex 32`) and scrape with Authorization: Bearer <token>'
  );
}
