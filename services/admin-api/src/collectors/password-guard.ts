import { AppError, SSL_MODES } from '@pga/contracts';

/** The fields of a target that decide where its password goes and how it is protected on the way. */
export interface GuardedTarget {
  type: string;
  host: string;
  port: number;
  /** A libpq ssl mode (SSL_MODES). */
  ssl_mode: string;
  /** The CA certificate (PEM), undefined when none is stored. */
  ssl_certificate?: string | undefined;
}

/** A change a caller asks for: undefined leaves the stored value, `null` removes a certificate. */
export type GuardedChange = {
  [K in keyof GuardedTarget]?: GuardedTarget[K] | (K extends 'ssl_certificate' ? null : never);
};

/** libpq's ssl modes, weakest first: a mode before the stored one protects the password less. */
const STRENGTH = new Map<string, number>(SSL_MODES.map((mode, i) => [mode, i]));

/**
 * Why a change would send a collector's stored password somewhere it was not saved for, or
 * undefined when it would not. One rule for `collectors.update` (the edge hands the password to
 * the agent, which sends it to the new settings) and `collectors.testConnection` (the service
 * itself sends it):
 *
 * - `type`, `host`, `port`: another server (or another program on it) receives the password.
 * - `ssl_certificate` set, replaced or removed: the CA the target is verified against decides who
 *   can pose as it; an attacker's CA lets an attacker's server pass `verify-ca`/`verify-full`.
 * - `ssl_mode` weaker than the stored one (`disable` < `allow` < `prefer` < `require` <
 *   `verify-ca` < `verify-full`): the password may then travel unencrypted or to an unverified
 *   server. A stronger mode needs nothing.
 *
 * `database` and `username` are not guarded: the same server receives the password (it is the
 * server's secret, for its role; naming another database or role there gives it to nobody new).
 *
 * A stored password that is empty (the placeholder of an enrolled collector, which the admin
 * completes) has nothing to protect: no password is needed then.
 */
export function passwordRedirect(
  stored: GuardedTarget,
  change: GuardedChange,
): { field: keyof GuardedTarget; message: string } | undefined {
  for (const field of ['type', 'host', 'port'] as const) {
    const next = change[field];
    if (next !== undefined && next !== stored[field]) return { field, message: `${field} changes (${stored[field]} → ${next})` };
  }
  if (change.ssl_certificate !== undefined && (change.ssl_certificate ?? undefined) !== stored.ssl_certificate)
    return {
      field: 'ssl_certificate',
      message: change.ssl_certificate === null ? 'ssl_certificate is removed' : 'ssl_certificate changes',
    };
  if (change.ssl_mode !== undefined && (STRENGTH.get(change.ssl_mode) ?? -1) < (STRENGTH.get(stored.ssl_mode) ?? 0))
    return { field: 'ssl_mode', message: `ssl_mode is weakened (${stored.ssl_mode} → ${change.ssl_mode})` };
  return undefined;
}

/**
 * Throws VALIDATION_FAILED on `password` when the change needs the password typed in
 * (passwordRedirect) and none was given; `storedPassword` empty (enrollment placeholder) never
 * needs it.
 */
export function requirePasswordForRedirect(
  stored: GuardedTarget,
  storedPassword: string | undefined,
  change: GuardedChange & { password?: string | undefined },
): void {
  if (change.password !== undefined || storedPassword === '') return;
  const redirect = passwordRedirect(stored, change);
  if (redirect)
    throw new AppError(
      'VALIDATION_FAILED',
      `password: is required when ${redirect.message}: the stored password is sent only to the server, and with the TLS protection, it was saved for`,
      { field: 'password' },
    );
}
