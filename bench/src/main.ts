/**
 * `npm run bench`: starts an isolated PostgreSQL + Redis + the services, runs every scenario
 * `--runs` times (default 3), and writes bench/results/<timestamp>.{json,md,html}. See bench/README.md.
 */
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { SCENARIOS } from './cases/index';
import { parseCli, readCompareFile, USAGE } from './cli';
import { compareResults, formatComparison } from './harness/compare';
import { extraServiceEnv } from './harness/diagnostics';
import { describeMachine } from './harness/machine';
import type { BenchResult, ScenarioResult } from './harness/model';
import { machineTicks, ownTicks, sampleTrees } from './harness/proc';
import { Progress } from './harness/progress';
import { computeRatios } from './harness/ratios';
import { runScenario } from './harness/run-suite';
import { BenchStack } from './harness/stack';
import { renderHtml } from './report/html';
import { renderMarkdown } from './report/markdown';

const benchDir = path.resolve(import.meta.dirname, '..');
let options;
try {
  options = parseCli(process.argv.slice(2), path.join(benchDir, 'results'));
  extraServiceEnv(); // a malformed BENCH_SERVICE_ENV is refused here, not at the first service start
} catch (err) {
  console.error(`${err instanceof Error ? err.message : String(err)}\n\n${USAGE}`);
  process.exit(2);
}
const unknown = options.scenarios.filter((n) => !SCENARIOS.some((s) => s.name === n));
if (unknown.length) {
  console.error(`unknown scenario(s): ${unknown.join(', ')}\n\n${USAGE}`);
  process.exit(2);
}
// Read before anything starts: a file that is missing or not a results JSON is a bad argument.
let compared: ReturnType<typeof readCompareFile> | undefined;
try {
  compared = options.compare ? readCompareFile(options.compare, benchDir) : undefined;
} catch (err) {
  console.error(err instanceof Error ? err.message : String(err));
  process.exit(2);
}
const compareFile = compared?.file;
const previous: BenchResult | undefined = compared?.result;
const selected = options.scenarios.length ? SCENARIOS.filter((s) => options.scenarios.includes(s.name)) : SCENARIOS;

const machine = describeMachine();
const startedAt = new Date();
const progress = new Progress();
progress.log(
  `bench (${options.full ? 'full' : 'quick'}): ${selected.map((s) => s.name).join(', ')} × ${options.runs} runs on ${machine.cores} cores, load ${machine.loadBefore.join('/')}`,
);

const m0 = machineTicks();
const self0 = ownTicks();
// Signals: before the stack is up, remember and stop it as soon as it is (nothing is left behind).
const run: { stack?: BenchStack; interrupted?: number; sampler?: NodeJS.Timeout } = {};
const stopAll = async (code: number) => {
  // The scenario still running loses its connections to the stop itself (PostgreSQL answers 57P01,
  // Redis resets): from here only the cleanup matters, and such an error must not end the process
  // before it has stopped and removed what it started.
  const report = (err: unknown) => progress.log(`while stopping: ${err instanceof Error ? err.message : String(err)}`);
  process.on('uncaughtException', report);
  process.on('unhandledRejection', report);
  clearInterval(run.sampler);
  await run.stack?.stop().catch(() => undefined);
  process.exit(code);
};
const onSignal = (code: number) => (run.stack ? void stopAll(code) : (run.interrupted = code));
process.on('SIGINT', () => onSignal(130));
process.on('SIGTERM', () => onSignal(143));
progress.update('starting PostgreSQL and Redis');
let started: BenchStack;
try {
  started = await BenchStack.start();
} catch (err) {
  // Nothing is left running or on disk (BenchStack.start cleans up after itself).
  console.error(`\nbench: could not start PostgreSQL and Redis: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
run.stack = started;
if (run.interrupted !== undefined) await stopAll(run.interrupted);
/**
 * CPU ticks of everything the bench started, since m0, so that "others" (foreign load) can be told
 * apart at the end: the trees of PostgreSQL, Redis and the services, plus the bench process alone.
 * Not the bench's own tree: those servers are its children, and would count twice. A process that
 * exits moves its ticks into its parent's (cutime), so the sum only grows; the peak is kept anyway.
 */
let ourTicks = 0;
run.sampler = setInterval(() => {
  const trees = Object.values(sampleTrees(started.roots())).reduce((a, s) => a + s.ticks, 0);
  ourTicks = Math.max(ourTicks, trees + ownTicks() - self0);
}, 1000);

const results: ScenarioResult[] = [];
const shared = new Map<string, unknown>();
try {
  for (const scenario of selected) {
    if (scenario.fullOnly && !options.full && !options.scenarios.includes(scenario.name)) {
      const reason = `full suite only (npm run bench -- --full, or --scenario ${scenario.name})`;
      results.push({
        name: scenario.name,
        goal: scenario.goal,
        status: 'skipped',
        reason,
        durationMs: 0,
        figures: [],
        runs: [],
        notes: [],
      });
      progress.log(`– ${scenario.name}: ${reason}`);
      continue;
    }
    const r = await runScenario(scenario, {
      stack: started,
      mode: options.full ? 'full' : 'quick',
      runs: options.runs,
      progress,
      shared,
    });
    results.push(r);
    progress.log(
      `${r.status === 'ok' ? '✓' : r.status === 'skipped' ? '–' : '✗'} ${r.name} (${(r.durationMs / 1000).toFixed(0)} s)${r.reason ? `: ${r.reason}` : ''}`,
    );
  }
} finally {
  clearInterval(run.sampler);
  if (results.some((r) => r.status === 'failed')) {
    // Keep the service logs of a failed bench (the temporary folder is removed with the stack).
    const logDir = path.join(options.outDir, `${startedAt.toISOString().replace(/[:.]/g, '-')}-logs`);
    mkdirSync(logDir, { recursive: true });
    for (const f of readdirSync(started.workDir).filter((n) => n.endsWith('.log')))
      copyFileSync(path.join(started.workDir, f), path.join(logDir, f));
    copyFileSync(started.pg.logFile, path.join(logDir, 'postgres.log'));
    progress.log(`service logs kept in ${logDir}`);
  }
  progress.update('stopping the stack');
  await started.stop().catch((err: unknown) => progress.log(`stopping the stack: ${String(err)}`));
}

const m1 = machineTicks();
// Everything the bench started has exited and been waited for: its own ticks now hold all of it.
ourTicks = Math.max(ourTicks, ownTicks() - self0);
machine.loadAfter = os.loadavg().map((v) => Math.round(v * 100) / 100);
const seconds = (Date.now() - startedAt.getTime()) / 1000;
// Machine busy time minus what the bench and everything it started used.
machine.foreignCpuCores = Math.max(0, (m1.busy - m0.busy - ourTicks) / 100 / seconds);

const result: BenchResult = {
  schema: 1,
  startedAt: startedAt.toISOString(),
  finishedAt: new Date().toISOString(),
  mode: options.full ? 'full' : 'quick',
  runsPerScenario: options.runs,
  argv: process.argv.slice(2),
  machine,
  tolerancePct: options.tolerancePct,
  scenarios: results,
  ratios: computeRatios(results),
};

mkdirSync(options.outDir, { recursive: true });
const stamp = result.startedAt.replace(/[:.]/g, '-');
const base = path.join(options.outDir, stamp);
writeFileSync(`${base}.json`, `${JSON.stringify(result, null, 2)}\n`);
const markdown = renderMarkdown(result);
writeFileSync(`${base}.md`, markdown);
writeFileSync(`${base}.html`, renderHtml(result));
console.log(`\n${markdown}`);
console.log(`results: ${base}.json  ${base}.md  ${base}.html`);
const budget = options.full ? undefined : 300;
console.log(
  `suite took ${seconds.toFixed(0)} s${budget ? ` (quick-suite budget ${budget} s${seconds > budget ? ': OVER BUDGET on this machine' : ''})` : ''}`,
);

let code = results.some((r) => r.status === 'failed') ? 1 : 0;
if (previous) {
  const changes = compareResults(previous, result, options.tolerancePct);
  console.log(`\n${formatComparison(changes, options.tolerancePct)}`);
  if (changes.some((c) => c.verdict === 'regression')) {
    console.log(`\n✗ regression beyond ${options.tolerancePct} % against ${compareFile}`);
    code = 3;
  }
}
process.exit(code);
