import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Redis } from 'ioredis';
import { parse, stringify } from 'yaml';
import { createPool, type Pool } from '@pga/db';
import { createTestDatabase, testEnv, uniquePrefix, type TestDatabase } from '../helpers';
import { call, type EdgeProcess } from '../edge/harness';
import { spawnWriter, type ChildWriter } from '../writer/child-writer';
import { edgeWithCollector } from '../writer/edge-collector';
import { fixture, waitUntil, writerEnv } from '../writer/helpers';
import { asScraped, checkExpr, parseExposition, parseExpr, scrapeSeries, type Series } from './promql';

/**
 * monitoring/alerts.yml against the real services: every metric and label its rules use must be in
 * the /metrics of a running edge (two processes, so the primary's edge_worker_restarts_total is
 * there) and writer, as Prometheus stores them; a renamed metric or label fails here. promtool (from
 * Debian's package `prometheus`, which `npm test` extracts into .data/tools) checks the rules and the example scrape
 * configuration, and runs monitoring/alerts.test.yml: each alert fires in its scenario and none
 * fires when healthy.
 */
const root = path.resolve(import.meta.dirname, '../..');
const monitoring = path.join(root, 'monitoring');
const rulesFile = path.join(monitoring, 'alerts.yml');
const unitTestsFile = path.join(monitoring, 'alerts.test.yml');
const configFile = path.join(monitoring, 'prometheus.yml');

interface Rule {
  alert?: string;
  record?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleFile {
  groups: { name: string; interval?: string; rules: Rule[] }[];
}

const rules = () => parse(readFileSync(rulesFile, 'utf8')) as RuleFile;
const alerts = () => rules().groups.flatMap((g) => g.rules);

/** The scrape config's job names, as the rules' `up{job=…}` must name them. */
const scrapeJobs = () =>
  (parse(readFileSync(configFile, 'utf8')) as { scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] })
    .scrape_configs;

/** promtool where `npm test` puts it (scripts/bootstrap.mjs: .data/tools), else on PATH. */
const promtoolBin = () => {
  const fetched = path.join(root, '.data', 'tools', 'promtool');
  return existsSync(fetched) ? fetched : 'promtool';
};

function promtool(...args: string[]) {
  const res = spawnSync(promtoolBin(), args, { cwd: monitoring, encoding: 'utf8' });
  if (res.error)
    throw new Error(
      `promtool not found (${res.error.message}): npm test fetches it into .data/tools; or apt-get install prometheus`,
    );
  return { ok: res.status === 0, output: `${res.stdout}${res.stderr}` };
}

describe('monitoring/alerts.yml', () => {
  let db: TestDatabase;
  let pool: Pool;
  let edge: EdgeProcess | undefined;
  let writer: ChildWriter | undefined;
  let series: Series[] = [];
  let writerUrl = '';

  beforeAll(async () => {
    db = await createTestDatabase();
    pool = createPool(db.url, { max: 2 });
    const prefix = uniquePrefix('alerts');
    const env = await writerEnv(db.url, prefix);
    writer = spawnWriter(env);
    writerUrl = `http://127.0.0.1:${env.WRITER_PORT}`;
    await waitUntil(
      'writer ready',
      async () => (await fetch(`${writerUrl}/readyz`).catch(() => undefined))?.status === 200,
      60_000,
    );
    // One push a second per collector and process, no burst: the replays below are answered 429.
    const started = await edgeWithCollector(db.url, pool, prefix, {
      EDGE_PROCESSES: '2',
      RATE_LIMIT_PER_SECOND: '1',
      RATE_LIMIT_BURST: '1',
    });
    edge = started.edge;
    // A push through both, so the series that appear with traffic (edge_pushes_total,
    // edge_http_requests_total, histograms) are there too.
    const body = JSON.stringify({ ...(JSON.parse(fixture) as object), collector_id: started.id });
    const push = await call(`${edge.url}/api/v1/metrics/push`, { token: started.token, body });
    expect(push.status).toBe(200);
    // And a push answered 429 (edge_http_requests_total{route="push",status="429"}, which the
    // rate-limit alert reads): the same body again (a replay, never stored twice) until each
    // process's bucket is empty.
    const replays: number[] = [];
    for (let i = 0; i < 20 && !replays.includes(429); i++)
      replays.push((await call(`${edge.url}/api/v1/metrics/push`, { token: started.token, body })).status);
    expect(replays).toContain(429);
    const writerText = async () => (await fetch(`${writerUrl}/metrics`)).text();
    await waitUntil('push stored', async () => /^writer_pushes_stored_total 1$/m.test(await writerText()), 30_000);
    const [edgeJob, writerJob] = ['pga-edge', 'pga-writer'];
    const edgeInstance = new URL(edge.url).host;
    const writerInstance = new URL(writerUrl).host;
    series = [
      ...asScraped(parseExposition(await (await fetch(`${edge.url}/metrics`)).text()), edgeJob, edgeInstance),
      ...asScraped(parseExposition(await writerText()), writerJob, writerInstance),
      ...scrapeSeries(edgeJob, edgeInstance),
      ...scrapeSeries(writerJob, writerInstance),
    ];
  }, 180_000);

  afterAll(async () => {
    await edge?.stop();
    await writer?.kill('SIGTERM');
    await pool?.end();
    await db?.drop();
  });

  it('is YAML with the fields Prometheus requires, and each alert has for, severity, summary, description and a runbook that exists', () => {
    const file = rules();
    expect(Array.isArray(file.groups) && file.groups.length > 0).toBe(true);
    const groupNames = file.groups.map((g) => g.name);
    expect(new Set(groupNames).size).toBe(groupNames.length);
    const names: string[] = [];
    for (const group of file.groups) {
      expect(typeof group.name).toBe('string');
      expect(Array.isArray(group.rules) && group.rules.length > 0).toBe(true);
      for (const rule of group.rules) {
        const where = `${group.name}/${rule.alert ?? rule.record}`;
        expect(typeof rule.alert, `${where}: alerting rules only`).toBe('string');
        expect(rule.alert, where).toMatch(/^[A-Za-z_][A-Za-z0-9_]*$/);
        names.push(rule.alert!);
        expect(
          Object.keys(rule).every((k) => ['alert', 'expr', 'for', 'labels', 'annotations', 'keep_firing_for'].includes(k)),
          where,
        ).toBe(true);
        expect(typeof rule.expr === 'string' && rule.expr.trim().length > 0, where).toBe(true);
        expect(rule.for, where).toMatch(/^(0|([0-9]+(ms|s|m|h|d|w|y))+)$/);
        expect(['critical', 'warning', 'info'], where).toContain(rule.labels?.severity);
        expect(rule.annotations?.summary, where).toBeTruthy();
        expect((rule.annotations?.description ?? '').length, where).toBeGreaterThan(80);
        const [file, anchor] = (rule.annotations?.runbook_url ?? '').split('#');
        expect(anchor, `${where}: runbook_url file#section`).toBeTruthy();
        expect(headingAnchors(path.join(root, file!)), `${where}: ${rule.annotations?.runbook_url}`).toContain(anchor);
      }
    }
    expect(new Set(names).size, 'alert names unique').toBe(names.length);
    // README's "Monitoring it" names alerts of this file only.
    const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
    const section = readme.slice(
      readme.indexOf('## Monitoring it'),
      readme.indexOf('\n## ', readme.indexOf('## Monitoring it') + 1),
    );
    const named = [...section.matchAll(/`(Pga[A-Za-z]+)`/g)].map((m) => m[1]!);
    expect(named.length).toBeGreaterThan(0);
    expect(named.filter((n) => !names.includes(n))).toEqual([]);
  });

  it('the down alerts name a METRICS_TOKEN mismatch (a scrape answered 401) as a cause, not only a crash', () => {
    for (const name of ['PgaWriterDown', 'PgaEdgeDown']) {
      const description = alerts().find((r) => r.alert === name)?.annotations?.description ?? '';
      expect(description, name).toMatch(/401: METRICS_TOKEN and Prometheus's\s+credentials_file differ/);
    }
  });

  it('uses only metrics and labels that the running edge and writer export', () => {
    const problems: string[] = [];
    for (const rule of alerts()) {
      for (const p of checkExpr(rule.expr, series)) problems.push(`${rule.alert}: ${p}`);
      // Labels named in the annotations' templates must be on the alert (not aggregated away).
      const { selectors, groupingLabels } = parseExpr(rule.expr);
      const texts = Object.values(rule.annotations ?? {}).join(' ');
      for (const [, label] of texts.matchAll(/\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)/g)) {
        const onSeries = series.some((s) => selectors.some((sel) => sel.metric === s.name) && label! in s.labels);
        const removed = /\bwithout\s*\(/.test(rule.expr) && groupingLabels.includes(label!);
        if (!onSeries || removed)
          problems.push(`${rule.alert}: annotation uses $labels.${label}, which the alert does not carry`);
      }
      // up{job="…"} names a job of the example scrape configuration.
      for (const sel of selectors)
        for (const m of sel.matchers)
          if (m.label === 'job' && m.op === '=' && !scrapeJobs().some((j) => j.job_name === m.value))
            problems.push(`${rule.alert}: job "${m.value}" is not a job of monitoring/prometheus.yml`);
    }
    // The unit tests' input series are real metrics too (else they test a scenario that cannot happen).
    const unit = parse(readFileSync(unitTestsFile, 'utf8')) as { tests: { input_series: { series: string }[] }[] };
    const scraped = new Set(series.map((s) => s.name));
    for (const t of unit.tests)
      for (const { series: s } of t.input_series) {
        const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(s)?.[0];
        if (!name || !scraped.has(name)) problems.push(`alerts.test.yml: input series ${s} is not a scraped metric`);
      }
    expect(problems).toEqual([]);
  });

  it('exports no metric with a label of its own named job or instance (Prometheus would rename it exported_…)', () => {
    const clashing = series.filter((s) => 'exported_job' in s.labels || 'exported_instance' in s.labels);
    expect([...new Set(clashing.map((s) => `${s.name}{${Object.keys(s.labels).join(',')}}`))]).toEqual([]);
    // Nor do the promtool scenarios feed such series.
    const unit = readFileSync(unitTestsFile, 'utf8');
    expect(unit).not.toMatch(/exported_(job|instance)/);
    expect(readFileSync(rulesFile, 'utf8')).not.toMatch(/\$labels\.exported_|exported_(job|instance)\s*[=!~]/);
  });

  it("reads Redis's memory on a two-process edge as Redis's own figure, not a sum over the processes", async () => {
    // PgaRedisMemoryNearBudget compares it with the budget: a sum would fire at half the budget.
    const redis = new Redis(testEnv.redisUrl, { maxRetriesPerRequest: 1 });
    try {
      // The edge's figure is its last health check's (≤ 1 s old) and Redis's memory moves meanwhile
      // (a run read 0.497): compared again up to 10 times a second apart. A sum over the two
      // processes reads ≈ 2 × at every try, so it still fails.
      let used = 0;
      let info = 0;
      for (let attempt = 0; attempt < 10; attempt++) {
        const text = await (await fetch(`${edge!.url}/metrics`)).text();
        used = Number(/^edge_redis_used_memory_bytes (\S+)$/m.exec(text)?.[1]);
        info = Number(/^used_memory:(\d+)/m.exec(await redis.info('memory'))?.[1]);
        if (used / info > 0.5 && used / info < 1.5) break;
        await new Promise((r) => setTimeout(r, 1000));
      }
      expect(used).toBeGreaterThan(0);
      expect(used / info).toBeGreaterThan(0.5);
      expect(used / info).toBeLessThan(1.5);
    } finally {
      redis.disconnect();
    }
  });

  it("reads the clocks on the running edge and writer: measured (not the 0 before a first reading), near 0 on one machine, and averaged over the edge's processes", async () => {
    // PgaClockSkew fires past 5 s. The edge reads Redis's server_time_usec from its health check's
    // INFO every second; the writer PostgreSQL's clock_timestamp() from its readiness check, which
    // the /readyz probe (and each scrape) runs.
    const read = (text: string, name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    await fetch(`${writerUrl}/readyz`);
    const edgeOffset = read(await (await fetch(`${edge!.url}/metrics`)).text(), 'edge_clock_offset_seconds');
    const writerOffset = read(await (await fetch(`${writerUrl}/metrics`)).text(), 'writer_clock_offset_seconds');
    for (const offset of [edgeOffset, writerOffset]) {
      expect(Number.isFinite(offset)).toBe(true);
      // same host, same clock: within the round trip's half (a reading slower than 250 ms is skipped)
      expect(Math.abs(offset)).toBeLessThan(0.2);
      expect(offset).not.toBe(0);
    }
  });

  it('would catch a renamed metric, label or label value', () => {
    // The check itself, on the live scrape: what a rename on either side would look like.
    expect(checkExpr('writer_queue_lag_secs > 60', series)).toEqual(['metric writer_queue_lag_secs is not in any scrape']);
    expect(checkExpr('increase(writer_maintenance_runs_total{result="failed"}[1h]) > 0', series)[0]).toMatch(
      /label result of writer_maintenance_runs_total is not in the scrape/,
    );
    expect(checkExpr('rate(edge_rejections_total{reason="UNAVAILABEL"}[5m]) > 0', series)[0]).toMatch(
      /matches no scraped series/,
    );
    expect(checkExpr('rate(edge_token_cache_lookups_total{result=~"hit|mis"}[5m]) > 0', series)[0]).toMatch(/mis not scraped/);
    // A label of the target's (job) selects the scrape target, not the maintenance task.
    expect(checkExpr('writer_maintenance_runs_total{job="partitions"}', series)[0]).toMatch(/matches no scraped series/);
    expect(checkExpr('writer_maintenance_runs_total{task="partitions"}', series)).toEqual([]);
    expect(checkExpr('sum by (reason) (edge_pushes_total)', series)[0]).toMatch(/grouping label reason/);
  });

  it('passes promtool check rules and check config', () => {
    const rulesCheck = promtool('check', 'rules', rulesFile);
    expect(rulesCheck.ok, rulesCheck.output).toBe(true);
    const configCheck = promtool('check', 'config', configFile);
    expect(configCheck.ok, configCheck.output).toBe(true);
  });

  it('the scrape configuration with METRICS_TOKEN (README, monitoring/prometheus.yml uncommented) passes promtool check config', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'pga-metrics-token-'));
    try {
      const tokenFile = path.join(dir, 'pga-metrics-token');
      writeFileSync(tokenFile, `${'t'.repeat(64)}\n`);
      const readme = readFileSync(path.join(root, 'README.md'), 'utf8');
      const section = readme.slice(readme.indexOf('**Protecting `/metrics`.**'));
      const documented = /```yaml\n([\s\S]*?)```/.exec(section)?.[1];
      expect(documented, 'README: the scrape configuration under "Protecting /metrics"').toBeDefined();
      // The example file with its `authorization` lines uncommented, the rules beside it.
      const uncommented = readFileSync(configFile, 'utf8').replace(
        /^(\s*)# (authorization:| {2}type: Bearer| {2}credentials_file:)/gm,
        '$1$2',
      );
      writeFileSync(path.join(dir, 'alerts.yml'), readFileSync(rulesFile));
      for (const [name, text] of [
        ['readme.yml', documented!],
        ['prometheus.yml', uncommented],
      ] as const) {
        const config = text.replaceAll('/etc/prometheus/pga-metrics-token', tokenFile);
        const jobs = (parse(config) as { scrape_configs: { authorization?: { type: string; credentials_file: string } }[] })
          .scrape_configs;
        expect(jobs.map((j) => j.authorization)).toEqual(jobs.map(() => ({ type: 'Bearer', credentials_file: tokenFile })));
        writeFileSync(path.join(dir, name), config);
        const check = promtool('check', 'config', path.join(dir, name));
        expect(check.ok, `${name}: ${check.output}`).toBe(true);
      }
      // promtool reads the credentials file: a missing one fails, so the check above is not vacuous.
      rmSync(tokenFile);
      expect(promtool('check', 'config', path.join(dir, 'readme.yml')).ok).toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('fires each alert in its scenario and none when healthy (promtool test rules)', () => {
    const unit = parse(readFileSync(unitTestsFile, 'utf8')) as {
      tests: { name?: string; alert_rule_test?: { alertname: string; exp_alerts: unknown[] }[] }[];
    };
    const cases = unit.tests.flatMap((t) => t.alert_rule_test ?? []);
    const names = alerts().map((r) => r.alert!);
    for (const name of names) {
      expect(
        cases.some((c) => c.alertname === name && c.exp_alerts.length > 0),
        `${name} has a firing scenario`,
      ).toBe(true);
      expect(
        cases.some((c) => c.alertname === name && c.exp_alerts.length === 0),
        `${name} has a healthy case`,
      ).toBe(true);
    }
    // promtool compares rendered annotations exactly; the scenarios are about when each alert fires,
    // so they run against a copy of the rules without annotations (check rules parsed the originals).
    const dir = mkdtempSync(path.join(tmpdir(), 'pga-alerts-'));
    try {
      const bare = rules();
      for (const g of bare.groups) for (const r of g.rules) delete r.annotations;
      writeFileSync(path.join(dir, 'alerts.yml'), stringify(bare));
      writeFileSync(path.join(dir, 'alerts.test.yml'), readFileSync(unitTestsFile));
      const run = promtool('test', 'rules', path.join(dir, 'alerts.test.yml'));
      expect(run.ok, run.output).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** GitHub's anchors of a Markdown file's headings. */
function headingAnchors(file: string): string[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => /^#{1,6} /.test(l))
    .map((l) =>
      l
        .replace(/^#+ /, '')
        .trim()
        .toLowerCase()
        .replace(/[^\p{L}\p{N} _-]/gu, '')
        .replace(/ /g, '-'),
    );
}
