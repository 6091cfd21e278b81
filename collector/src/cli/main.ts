import os from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError } from '@pga/config';
import { resolveCredentials } from '../agent/credentials';
import { readState, stateFileOf, writeState } from '../agent/state-file';
import { createCentralClient, enroll } from '../central/central-client';
import { COLLECTOR_VERSION } from '../collect/collect-snapshot';
import { readCollectorEnv, type CollectorEnv } from '../config';
import { stringifyJson } from '../json/stringify-json';
import { createRuntime } from '../runtime';
import { runCheck } from './check';
import { HELP } from './help';
import { createCollectorLogger } from './logger';
import { whenOrphaned } from './when-orphaned';

type Mode = 'run' | 'once' | 'dry-run' | 'check' | 'enroll' | 'help';

function modeOf(argv: string[]): Mode {
  const { values } = parseArgs({
    args: argv,
    options: {
      once: { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      check: { type: 'boolean' },
      enroll: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  const chosen = (['help', 'enroll', 'check', 'dry-run', 'once'] as const).filter((m) => values[m]);
  if (chosen.length > 1) throw new Error(`choose one of --${chosen.join(', --')}`);
  return chosen[0] ?? 'run';
}

/** The CLI; returns the exit code (the long-running mode resolves only after SIGTERM/SIGINT). */
/**
 * `parentPid`: the agent's parent when the process started (bin/pga-collector.js reads it before
 * loading the sources, which with tsx takes a while): one that changes is watched from then on.
 */
export async function main(
  argv: string[],
  env: Record<string, string | undefined> = process.env,
  parentPid: number = process.ppid,
): Promise<number> {
  let mode: Mode;
  try {
    mode = modeOf(argv);
  } catch (err) {
    console.error(`pga-collector: ${(err as Error).message}\n\n${HELP}`);
    return 2;
  }
  if (mode === 'help') {
    process.stdout.write(HELP);
    return 0;
  }
  let config: CollectorEnv;
  try {
    config = readCollectorEnv(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    console.error(`pga-collector: ${err.message}`);
    return mode === 'check' ? (console.log('✗ config: invalid environment'), 1) : 1;
  }
  const logger = createCollectorLogger(mode === 'run' ? config.LOG_LEVEL : env.LOG_LEVEL ? config.LOG_LEVEL : 'warn');
  if (mode === 'enroll') return enrollMode(config);

  if (mode === 'check') {
    const credentials = resolveCredentials(config, config.COLLECTOR_STATE_DIR);
    const central = credentials
      ? createCentralClient({
          baseUrl: config.CENTRAL_API_URL,
          credentials: () => credentials,
          timeoutMs: config.COLLECTOR_HTTP_TIMEOUT_MS,
        })
      : undefined;
    const result = await runCheck({
      central,
      credentials: credentials && `collector ${credentials.collectorId} (${credentialSource(config, credentials.token)})`,
      targetUrl: config.TARGET_DATABASE_URL,
      statementTimeoutMs: config.COLLECTOR_STATEMENT_TIMEOUT_MS,
    });
    for (const s of result.steps)
      console.log(`${s.ok ? '✓' : s.stage === 'pg_stat_statements' ? '!' : '✗'} ${s.stage}: ${s.detail}`);
    const failed = result.steps.find((s) => !s.ok && s.stage !== 'pg_stat_statements');
    console.log(failed ? `check failed at stage "${failed.stage}"` : 'check passed');
    return result.ok ? 0 : 1;
  }
  const { agent, pusher, spool, tokens: holder, enrolled } = await createRuntime(config, logger, { dryRun: mode === 'dry-run' });
  // --dry-run without credentials still works against TARGET_DATABASE_URL: nothing is sent anyway.
  if (!enrolled && (mode !== 'dry-run' || !config.TARGET_DATABASE_URL)) {
    console.error('pga-collector: set COLLECTOR_ID and COLLECTOR_JWT_TOKEN, or run --enroll with REGISTRATION_SECRET first');
    return 1;
  }

  if (mode === 'dry-run' || mode === 'once') {
    if (enrolled) await agent.pullConfig();
    const snapshot = await agent.collect({ spool: mode === 'once' }).catch((err: Error) => err);
    await agent.stop();
    if (snapshot instanceof Error) {
      console.error(`pga-collector: ${snapshot.message}`);
      return 1;
    }
    if (mode === 'dry-run') {
      process.stdout.write(`${stringifyJson(snapshot.envelope)}\n`);
      return 0;
    }
    const failure = await pusher.drainOnce();
    const stats = pusher.stats();
    console.log(
      JSON.stringify({
        push_id: snapshot.pushId,
        metrics: snapshot.envelope.metrics.length,
        collection_time_ms: snapshot.collectionTimeMs,
        collection_errors: snapshot.errors,
        pushed: stats.pushed,
        duplicates: stats.duplicates,
        spooled: spool.stats().files,
        error: failure,
      }),
    );
    return failure ? 1 : 0;
  }

  logger.info(
    { version: COLLECTOR_VERSION, collector_id: holder.current().collectorId, central: config.CENTRAL_API_URL },
    'collector starting',
  );
  await agent.start();
  let unwatch = () => {};
  await new Promise<void>((resolve) => {
    process.once('SIGTERM', resolve);
    process.once('SIGINT', resolve);
    // Started by npx / npm exec, whose wrapper (npm → sh -c → node) exits on a supervisor's SIGTERM
    // without passing it on: when that parent goes, stop as on SIGTERM. Only then: an agent started
    // in the background from a shell that exits later (`nohup … &`) runs on, as it always did.
    if (env.npm_command === 'exec')
      unwatch = whenOrphaned(() => {
        logger.warn({ ppid: process.ppid }, 'parent process exited: stopping as on SIGTERM');
        resolve();
      }, parentPid);
  });
  unwatch();
  logger.info('stopping');
  await agent.stop();
  return 0;
}

/** Where the credentials `--check` uses came from (see resolveCredentials: env vs enrollment state). */
function credentialSource(config: CollectorEnv, token: string): string {
  return token === config.COLLECTOR_JWT_TOKEN ? 'from the environment' : `from ${stateFileOf(config.COLLECTOR_STATE_DIR)}`;
}

async function enrollMode(config: CollectorEnv): Promise<number> {
  const existing = readState(config.COLLECTOR_STATE_DIR);
  if (existing) {
    console.log(`already enrolled as ${existing.collector_id} (${stateFileOf(config.COLLECTOR_STATE_DIR)})`);
    return 0;
  }
  if (!config.REGISTRATION_SECRET) {
    console.error('pga-collector: --enroll needs REGISTRATION_SECRET');
    return 1;
  }
  const hostname = os.hostname();
  const res = await enroll(
    config.CENTRAL_API_URL,
    config.REGISTRATION_SECRET,
    { name: config.COLLECTOR_NAME ?? hostname, hostname, version: COLLECTOR_VERSION },
    config.COLLECTOR_HTTP_TIMEOUT_MS,
  );
  if (!res.ok) {
    console.error(`pga-collector: enrollment refused: ${res.status || 'network'} ${res.code}: ${res.message}`);
    return 1;
  }
  await writeState(config.COLLECTOR_STATE_DIR, {
    collector_id: res.body.collector_id,
    token: res.body.token,
    expires_at: res.body.expires_at,
  });
  console.log(`enrolled as ${res.body.collector_id}; id and token saved to ${stateFileOf(config.COLLECTOR_STATE_DIR)} (0600)`);
  return 0;
}
