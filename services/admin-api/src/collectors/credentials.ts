import type { IssuedToken } from '@pga/tokens';
import type { AdminConfig } from '../config';
import type { IssuedCredentials } from './collector-schema';

/** The once-only answer with a new token and the collector's setup (design "Step 5"). */
export function credentialsFor(config: AdminConfig, collectorId: string, issued: IssuedToken): IssuedCredentials {
  const setup = { COLLECTOR_JWT_TOKEN: issued.token, COLLECTOR_ID: collectorId, CENTRAL_API_URL: config.CENTRAL_API_URL };
  return {
    token: issued.token,
    token_expires_at: issued.expiresAt.toISOString(),
    setup,
    instructions: [
      'Configure the collector with these settings, then restart it. The token is shown only once:',
      'store it in your secret manager now; if it is lost, rotate it.',
      ...Object.entries(setup).map(([k, v]) => `export ${k}='${v}'`),
    ].join('\n'),
  };
}
