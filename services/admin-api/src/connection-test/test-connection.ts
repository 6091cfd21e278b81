import { probeMysql } from './probe-mysql';
import { probePostgres } from './probe-postgres';
import { connectTcp, hostPort, resolveHost } from './network';
import { StageFailure, type ConnectionTarget, type ConnectionTestResult } from './result';
import { createStepRunner } from './step-runner';

/**
 * Tests a target database stage by stage — DNS, TCP, TLS, login, query — within `timeoutMs`
 * (default 5 s), and says which stage failed in words an admin can act on. Connection settings go
 * to the drivers as separate fields (no connection string is ever built), and no message contains
 * the password. PostgreSQL and MySQL/MariaDB are tested; MongoDB and Oracle answer "not supported yet".
 */
export async function testConnection(
  target: ConnectionTarget,
  { timeoutMs = 5000 }: { timeoutMs?: number } = {},
): Promise<ConnectionTestResult> {
  if (target.type === 'mongodb' || target.type === 'oracle') {
    const name = target.type === 'mongodb' ? 'MongoDB' : 'Oracle';
    return {
      ok: false,
      supported: false,
      failed_stage: null,
      message: `connection tests for ${name} are not supported yet; the collector reports connection problems in its heartbeat`,
      server_version: null,
      pg_stat_statements: null,
      stages: [],
      duration_ms: 0,
    };
  }
  const { step, stages, elapsed } = createStepRunner(timeoutMs);
  try {
    const address = await step('dns', (remaining) => resolveHost(target.host, remaining()));
    const socket = await step('tcp', (remaining) => connectTcp(address, target.port, target.host, remaining()));
    const probed =
      target.type === 'postgresql' ? await probePostgres(target, socket, step) : await probeMysql(target, socket, step);
    const note = 'note' in probed ? probed.note : undefined;
    const details = { server_version: probed.server_version, pg_stat_statements: probed.pg_stat_statements };
    return {
      ok: true,
      supported: true,
      failed_stage: null,
      message: `connected to ${hostPort(target.host, target.port)} as "${target.username}"${note ? ` ${note}` : ''}`,
      ...details,
      stages,
      duration_ms: elapsed(),
    };
  } catch (err) {
    if (!(err instanceof StageFailure)) throw err;
    return {
      ok: false,
      supported: true,
      failed_stage: err.stage,
      message: err.message,
      server_version: null,
      pg_stat_statements: null,
      stages,
      duration_ms: elapsed(),
    };
  }
}
