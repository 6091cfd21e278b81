import { randomUUID, createHash } from 'node:crypto';
import { SignJWT, jwtVerify, errors, type JWSHeaderParameters } from 'jose';
import { AppError, CollectorTokenClaimsSchema, type CollectorTokenClaims } from '@pga/contracts';
import { DEFAULT_KEY_ID, isKeyId, parseJwtSecret } from '@pga/crypto';

/** The one module that mints and verifies collector JWTs (admin service, edge, tests, bench). */
export interface TokenSettings {
  /**
   * `JWT_SECRET`: one HMAC secret of 32+ bytes (key id "k1"), or `id:secret,id:secret` whose first
   * key signs and whose every key verifies (rotation; @pga/crypto's `parseJwtSecret`).
   */
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
  /** Id of the key that signed it (the token's `kid`): the active key of `JWT_SECRET`. */
  keyId: string;
}

export interface VerifiedToken {
  claims: CollectorTokenClaims;
  /** Id of the key that verified it: its `kid`, or "k1" for a token without one (issued before key ids). */
  keyId: string;
}

export interface CollectorTokens {
  issue(collectorId: string, options?: { ttlSeconds?: number; now?: Date }): Promise<IssuedToken>;
  /** Verifies signature (HS256 only), iss, aud, exp, nbf and claim shapes; throws AppError UNAUTHORIZED. */
  verify(token: string): Promise<CollectorTokenClaims>;
  /** `verify`, and which key verified the token. */
  verifyWithKeyId(token: string): Promise<VerifiedToken>;
  /** Id of the key that signs new tokens (the first of `JWT_SECRET`). */
  readonly activeKeyId: string;
  /** Ids of every key that verifies, the active one first. */
  readonly keyIds: readonly string[];
}

const ALGORITHM = 'HS256';
const ONE_YEAR = 365 * 24 * 3600;

export function hashToken(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

export function createCollectorTokens(settings: TokenSettings): CollectorTokens {
  const { keyring, activeKeyId } = parseJwtSecret(settings.secret);
  // Imported once as CryptoKeys: handed raw bytes, jose imports the key again on every call, which
  // took about a third of each verification's ~300 µs here (an edge restart verifies every
  // collector's token once).
  const keys = new Map(
    [...keyring].map(([id, secret]) => [
      id,
      crypto.subtle.importKey('raw', new Uint8Array(secret), { name: 'HMAC', hash: 'SHA-256' }, false, ['sign', 'verify']),
    ]),
  );
  const signingKey = keys.get(activeKeyId)!;
  /**
   * The key a token names in its `kid`. A token without one was issued before key ids, by the one
   * secret there was, which is "k1" when written without an id: one rule, no trying of every key
   * (README "Rotating JWT_SECRET"). The algorithm is checked before this runs (HS256 only).
   */
  const keyFor = (header: JWSHeaderParameters): { id: string; key: Promise<CryptoKey> } => {
    const kid: unknown = header.kid ?? DEFAULT_KEY_ID;
    if (typeof kid !== 'string' || !isKeyId(kid)) throw new AppError('UNAUTHORIZED', 'token key id (kid) is malformed');
    const key = keys.get(kid);
    if (key) return { id: kid, key };
    throw new AppError(
      'UNAUTHORIZED',
      header.kid === undefined
        ? `token has no key id (kid) and no key "${DEFAULT_KEY_ID}" is configured to verify it`
        : `token was signed with key "${kid}", which is not (or no longer) configured`,
    );
  };
  async function verifyWithKeyId(token: string): Promise<VerifiedToken> {
    let keyId = '';
    try {
      const { payload } = await jwtVerify(
        token,
        (header) => {
          const found = keyFor(header);
          keyId = found.id;
          return found.key;
        },
        {
          algorithms: [ALGORITHM],
          issuer: settings.issuer,
          audience: settings.audience,
          requiredClaims: ['sub', 'exp', 'iat', 'jti'],
        },
      );
      const claims = CollectorTokenClaimsSchema.safeParse(payload);
      if (!claims.success) throw new AppError('UNAUTHORIZED', 'token is not a collector token');
      return { claims: claims.data, keyId };
    } catch (err) {
      if (err instanceof AppError) throw err;
      throw new AppError('UNAUTHORIZED', describeJoseError(err));
    }
  }
  return {
    activeKeyId,
    keyIds: [...keys.keys()],
    async issue(collectorId, { ttlSeconds = settings.ttlSeconds ?? ONE_YEAR, now = new Date() } = {}) {
      const jti = randomUUID();
      const iat = Math.floor(now.getTime() / 1000);
      const exp = iat + ttlSeconds;
      const token = await new SignJWT({ type: 'collector', collector_id: collectorId })
        .setProtectedHeader({ alg: ALGORITHM, typ: 'JWT', kid: activeKeyId })
        .setSubject(collectorId)
        .setIssuer(settings.issuer)
        .setAudience(settings.audience)
        .setIssuedAt(iat)
        .setNotBefore(iat - 60)
        .setExpirationTime(exp)
        .setJti(jti)
        .sign(await signingKey);
      return {
        token,
        jti,
        tokenHash: hashToken(token),
        issuedAt: new Date(iat * 1000),
        expiresAt: new Date(exp * 1000),
        keyId: activeKeyId,
      };
    },
    verifyWithKeyId,
    async verify(token) {
      return (await verifyWithKeyId(token)).claims;
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
