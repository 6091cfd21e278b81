import { randomUUID, createHash } from 'node:crypto';
import { SignJWT, jwtVerify, errors } from 'jose';
import { AppError, CollectorTokenClaimsSchema, type CollectorTokenClaims } from '@pga/contracts';

/** The one module that mints and verifies collector JWTs (admin service, edge, tests, bench). */
export interface TokenSettings {
  /** HMAC secret, at least 32 bytes. */
  secret: string;
  /** `iss` of this installation. */
  issuer: string;
  /** `aud` of this installation. */
  audience: string;
  /** Token lifetime in seconds; default one year. */
  ttlSeconds?: number;
}

export interface IssuedToken {
  token: string;
  jti: string;
  /** SHA-256 hex of the token string: what the database keeps instead of the token. */
  tokenHash: string;
  issuedAt: Date;
  expiresAt: Date;
}

export interface CollectorTokens {
  issue(collectorId: string, options?: { ttlSeconds?: number; now?: Date }): Promise<IssuedToken>;
  /** Verifies signature (HS256 only), iss, aud, exp, nbf and claim shapes; throws AppError UNAUTHORIZED. */
  verify(token: string): Promise<CollectorTokenClaims>;
}

const ALGORITHM = 'HS256';
const ONE_YEAR = 365 * 24 * 3600;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function createCollectorTokens(settings: TokenSettings): CollectorTokens {
  if (Buffer.byteLength(settings.secret) < 32) throw new Error('JWT secret must be at least 32 bytes');
  // Imported once as a CryptoKey: handed raw bytes, jose imports the key again on every call, which
  // took about a third of each verification's ~300 µs here (an edge restart verifies every
  // collector's token once).
  const key = crypto.subtle.importKey(
    'raw',
    new TextEncoder().encode(settings.secret),
    { name: 'HMAC', hash: 'SHA-256' },
    false,
    ['sign', 'verify'],
  );
  return {
    async issue(collectorId, { ttlSeconds = settings.ttlSeconds ?? ONE_YEAR, now = new Date() } = {}) {
      const jti = randomUUID();
      const iat = Math.floor(now.getTime() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({ type: 'collector', collector_id: collectorId })
        .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT' })
        .setSubject(collectorId)
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setIssuedAt(iat)
        .setNotBefore(iat - 60)
        .setExpirationTime(exp)
        .setJti(jti)
        .sign(await key);
      return { token, jti, tokenHash: hashToken(token), issuedAt: new Date(iat * 1000), expiresAt: new Date(exp * 1000) };
    },
    async verify(token) {
      try {
        const { payload } = await jwtVerify(token, await key, {
          algorithms: [ALGORITHM],
          issuer: settings.issuer,
          audience: settings.audience,
          requiredClaims: ['sub', 'exp', 'iat', 'jti'],
        });
        const claims = CollectorTokenClaimsSchema.safeParse(payload);
        if (!claims.success) throw new AppError('UNAUTHORIZED', 'token is not a collector token');
        return claims.data;
      } catch (err) {
        if (err instanceof AppError) throw err;
        throw new AppError('UNAUTHORIZED', describeJoseError(err));
      }
    },
  };
}

function describeJoseError(err: unknown): string {
  if (err instanceof errors.JWTExpired) return 'token expired';
  if (err instanceof errors.JWTClaimValidationFailed) return `token claim "${err.claim}" is not valid here`;
  if (err instanceof errors.JOSEAlgNotAllowed) return 'token algorithm not allowed';
  if (err instanceof errors.JWSSignatureVerificationFailed) return 'token signature is not valid';
  return 'token is malformed';
}
