import type { CentralClient } from '../central/central-client';
import { openTargetConnection, type TargetSpec } from '../collect/target-connection';

export interface CheckStep {
  stage: string;
  ok: boolean;
  detail: string;
}

/**
 * `--check`: each stage in order, stopping at the first failure so the report names it:
 * credentials → central-reachable → central-auth (config pull) → target-connect → target-query → pg_stat_statements
 * (the last one only warns: collection works without it).
 */
export async function runCheck({
  central,
  credentials,
  targetUrl,
  statementTimeoutMs,
}: {
  central: CentralClient | undefined;
  /** What `central` authenticates as, for the passing `credentials` line (never the token itself). */
  credentials?: string;
  targetUrl?: string;
  statementTimeoutMs: number;
}): Promise<{ ok: boolean; steps: CheckStep[] }> {
  const steps: CheckStep[] = [];
  const step = (stage: string, ok: boolean, detail: string) => (steps.push({ stage, ok, detail }), ok);
  const done = () => ({ ok: steps.every((s) => s.ok || s.stage === 'pg_stat_statements'), steps });

  if (!central) {
    step('credentials', false, 'no COLLECTOR_ID/COLLECTOR_JWT_TOKEN and no enrollment state: set them or run --enroll');
    return done();
  }
  step('credentials', true, credentials ?? 'found');
  const health = await central.health();
  if (
    !step(
      'central-reachable',
      health.ok,
      health.ok ? 'ingest edge answers /healthz' : `${health.status || ''} ${health.message}`.trim(),
    )
  )
    return done();
  const config = await central.config();
  if (
    !step(
      'central-auth',
      config.ok,
      config.ok ? `config version ${config.body.config_version}` : `${config.status} ${config.code}: ${config.message}`,
    )
  )
    return done();
  const spec: TargetSpec = targetUrl ? { url: targetUrl } : { target: config.ok ? config.body.target : (undefined as never) };
  let conn;
  try {
    conn = await openTargetConnection(spec, { statementTimeoutMs });
  } catch (err) {
    const e = err as Error & { stage?: string };
    step(e.stage ?? 'target-connect', false, e.message);
    return done();
  }
  try {
    step('target-connect', true, `connected to "${conn.database}"`);
    step('target-query', true, `server_version_num ${conn.serverVersionNum}`);
    const [ext] = await conn.query<{ n: number }>(
      `SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'pg_stat_statements'`,
    );
    step(
      'pg_stat_statements',
      (ext?.n ?? 0) > 0,
      (ext?.n ?? 0) > 0 ? 'installed' : 'not installed: query statistics will be empty',
    );
  } finally {
    await conn.close();
  }
  return done();
}
