import { StageFailure } from './result';

const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
]);

/** A TLS handshake error (by its code) as an actionable TLS-stage failure. */
export function tlsFailure(err: unknown, host: string): StageFailure {
  const code = (err as { code?: string }).code ?? 'error';
  if (UNTRUSTED.has(code))
    return new StageFailure(
      'tls',
      `the server's certificate is not trusted (${code}): paste its CA certificate, or use ssl_mode "require"`,
    );
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID')
    return new StageFailure(
      'tls',
      `the server's certificate is not issued for "${host}": use the host name on the certificate, or ssl_mode "verify-ca"`,
    );
  if (code === 'CERT_HAS_EXPIRED') return new StageFailure('tls', "the server's certificate has expired");
  return new StageFailure('tls', `the TLS handshake failed (${code})`);
}
