import net from 'node:net';
import { randomUUID } from 'node:crypto';
import { createPool } from '@pga/db';
import { expect, it } from 'vitest';
import { capturingLogger, createTestDatabase } from '../helpers';
import { fixture, insertCollector, ownPostgres, pushItem, startWriterHarness, waitUntil, type WriterHarness } from './helpers';

const ELEMENTS = (JSON.parse(fixture) as { metrics: unknown[] }).metrics.length;

/** Until each job was put back twice (writer_jobs_put_back_total); none failed, no attempt used up. */
async function putBackTwice(h: WriterHarness, ids: string[]): Promise<void> {
  await waitUntil(
    'jobs put back twice',
    async () =>
      Number(/^writer_jobs_put_back_total (\S+)/m.exec(await (await fetch(`${h.url}/metrics`)).text())?.[1]) >= 2 * ids.length,
    30_000,
    100,
  );
  for (const id of ids) {
    const job = await h.queue.getJob(id);
    expect(await job?.getState()).not.toBe('failed');
    expect(job?.attemptsMade).toBe(0);
  }
}

/**
 * PostgreSQL briefly stopped (issue 5 §1/§7): the writer holds its jobs and retries by SQLSTATE /
 * connection failure with backoff, reports not-ready, and once PostgreSQL is back stores every push
 * exactly once — nothing is dead-lettered, nothing lost. Uses a PostgreSQL of its own to stop.
 */
it('rides out a PostgreSQL restart: jobs wait, retry, then every push is stored once', async () => {
  const pg = await ownPostgres('outage');
  const url = pg.url;
  const { logger, lines } = capturingLogger('writer-test');
  const h = await startWriterHarness(url, { WRITER_HEARTBEAT_FLUSH_MS: '60000' }, logger);
  h.pool.on('error', () => undefined);
  try {
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(/^writer_ready 1$/m);
    const collector = await insertCollector(h.pool);
    const before = pushItem(fixture, collector);
    await h.waitForJob(await h.enqueue([before]), 'completed');

    await pg.stop();
    const during = Array.from({ length: 6 }, () => pushItem(fixture, collector));
    const ids = await Promise.all(during.map((p) => h.enqueue([p], { attempts: 1 })));
    await waitUntil('readyz reports PostgreSQL down', async () => (await fetch(`${h.url}/readyz`)).status === 503, 10_000, 100);
    // /metrics says the same (writer_ready, and why), what an alert can use: no /readyz prober needed.
    const scraped = await (await fetch(`${h.url}/metrics`)).text();
    expect(scraped).toMatch(/^writer_ready 0$/m);
    expect(scraped).toMatch(/^writer_not_ready_reason\{reason="postgresql unreachable"\} 1$/m);
    expect(scraped).toMatch(/^writer_not_ready_reason\{reason="redis unreachable"\} 0$/m);
    // Why it retries: writer_postgres_errors_total{reason="unreachable"} (PgaWriterRetrying's description).
    await waitUntil(
      'the push path counts PostgreSQL unreachable',
      async () =>
        Number(
          /^writer_postgres_errors_total\{reason="unreachable"\} (\S+)$/m.exec(
            await (await fetch(`${h.url}/metrics`)).text(),
          )?.[1],
        ) >= 1,
      10_000,
      100,
    );
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(/^writer_postgres_errors_total\{reason="disk_full"\} 0$/m);
    await new Promise((r) => setTimeout(r, 1500));
    const states = await Promise.all(ids.map((id) => h.queue.getJobState(id)));
    expect(states.filter((s) => s === 'completed' || s === 'failed')).toEqual([]);

    await pg.restart();
    await Promise.all(ids.map((id) => h.waitForJob(id, 'completed', 30_000)));
    const { rows } = await h.pool.query(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY push_id',
      [[before, ...during].map((p) => p.push_id)],
    );
    expect(rows).toHaveLength(during.length + 1);
    expect(rows.every((r) => r.n === ELEMENTS)).toBe(true);
    const text = await (await fetch(`${h.url}/metrics`)).text();
    expect(Number(/^writer_retries_total (\S+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
    expect(text).toMatch(/^writer_dead_letters_total 0$/m);
    await waitUntil('ready again', async () => (await fetch(`${h.url}/readyz`)).status === 200, 10_000, 100);
    const healthy = await (await fetch(`${h.url}/metrics`)).text();
    expect(healthy).toMatch(/^writer_ready 1$/m);
    expect(healthy.match(/^writer_not_ready_reason\{reason="[^"]+"\} 0$/gm)).toHaveLength(4);
    // The outage in the log: one warning as it starts (the idle pooled client cut off by the
    // shutdown is part of it, not a warning of its own), the first retry of each batch it caught (the
    // six jobs make one batch, or more on a busy machine: a worker takes jobs as they come), one line
    // at the end. Whether the cut-off client or a batch's first attempt notices first depends on timing.
    const said = lines.filter((l) => l.level >= 40 || /^PostgreSQL /.test(l.msg));
    const retries = said.filter((l) => l.msg === 'transient PostgreSQL error; retrying batch');
    expect(retries.length).toBeGreaterThanOrEqual(1);
    expect(retries.length).toBeLessThanOrEqual(during.length);
    expect(retries.map((l) => l.attempt)).toEqual(retries.map(() => 1));
    expect(said.filter((l) => !retries.includes(l)).map((l) => l.msg)).toEqual([
      expect.stringMatching(/^PostgreSQL unreachable: .*; retrying \(further errors summarised every 60 s\)$/),
      expect.stringMatching(/^PostgreSQL reachable again after \d+\.\d s$/),
    ]);
  } finally {
    await h.close();
    await pg.stop();
  }
});

/**
 * writer_queue_lag_seconds is now − enqueue time of the oldest push not yet committed (issue 5 §6):
 * a job this writer holds while its batch retries through a PostgreSQL outage counts, though it is
 * `active`, not waiting — else the lag read 0 during the very outage its alert exists for.
 */
it('reports queue lag of a job held while PostgreSQL is down, and 0 once it is stored', async () => {
  const pg = await ownPostgres('outagelag');
  const h = await startWriterHarness(pg.url, { WRITER_HEARTBEAT_FLUSH_MS: '60000' });
  h.pool.on('error', () => undefined);
  const lag = async () => {
    await h.writer.pushWorker.refreshGauges();
    return Number(/^writer_queue_lag_seconds (\S+)$/m.exec(await h.writer.metrics.registry.metrics())?.[1] ?? 'NaN');
  };
  try {
    await h.waitForJob(await h.enqueue([pushItem(fixture)]), 'completed');
    expect(await lag()).toBe(0);

    await pg.stop();
    const jobId = await h.enqueue([pushItem(fixture)], { attempts: 1 });
    await waitUntil('job held', async () => (await h.queue.getJobState(jobId)) === 'active', 10_000);
    await new Promise((r) => setTimeout(r, 3000));
    expect(await h.queue.getJobState(jobId)).toBe('active');
    expect(await h.queue.getWaitingCount()).toBe(0);
    expect(await lag()).toBeGreaterThanOrEqual(2);
    expect(await h.writer.metrics.registry.metrics()).toMatch(/^writer_queue_waiting_jobs 0$/m);

    await pg.restart();
    await h.waitForJob(jobId, 'completed', 30_000);
    expect(await lag()).toBe(0);
  } finally {
    await h.close();
    await pg.stop();
  }
});

/**
 * A TCP proxy to PostgreSQL. Once armed, the first connection that starts `COPY collector_metrics`
 * goes half-open, as in a failover or a partition without a RST: the proxy forwards nothing more
 * either way and keeps the writer's socket open (so TCP keepalive, answered by this host's kernel,
 * cannot notice), and it closes the server side, as the failed primary is gone.
 */
async function halfOpeningProxy(targetUrl: string) {
  const target = new URL(targetUrl);
  let armed = false;
  let silenced = 0;
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const upstream = net.connect(Number(target.port), target.hostname);
    let silent = false;
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => undefined);
      s.on('close', () => sockets.delete(s));
    }
    client.on('data', (chunk: Buffer) => {
      if (silent) return;
      if (armed && chunk.includes('COPY collector_metrics')) {
        armed = false;
        silent = true;
        silenced++;
        upstream.destroy();
        return;
      }
      upstream.write(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (!silent) client.write(chunk);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => {
      if (!silent) client.destroy();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = new URL(targetUrl);
  url.hostname = '127.0.0.1';
  url.port = String((server.address() as net.AddressInfo).port);
  return {
    url: url.toString(),
    arm: () => (armed = true),
    silenced: () => silenced,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

it('gives up on a connection gone silent mid-COPY after WRITER_BATCH_DEADLINE_MS and stores the batch on a new one', async () => {
  const db = await createTestDatabase();
  const proxy = await halfOpeningProxy(db.url);
  const h = await startWriterHarness(proxy.url, { WRITER_BATCH_DEADLINE_MS: '2000', WRITER_HEARTBEAT_FLUSH_MS: '60000' });
  try {
    proxy.arm();
    const item = pushItem(fixture);
    const started = Date.now();
    const jobId = await h.enqueue([item], { attempts: 1 });
    await h.waitForJob(jobId, 'completed', 15_000);
    expect(proxy.silenced()).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(2000);
    const { rows } = await h.pool.query('SELECT count(*)::int AS n FROM collector_metrics WHERE push_id = $1', [item.push_id]);
    expect(rows[0].n).toBe(ELEMENTS);
    const text = await (await fetch(`${h.url}/metrics`)).text();
    expect(Number(/^writer_retries_total (\S+)/m.exec(text)?.[1])).toBeGreaterThanOrEqual(1);
  } finally {
    await h.close();
    await proxy.close();
    await db.drop();
  }
});

/**
 * A PostgreSQL outage longer than the in-process retries (WRITER_RETRY_MAX_MS) and than every
 * attempt a job has: the job is put back to wait each time, its attempts untouched, and stored once
 * PostgreSQL is back — not a dead letter (before, ten attempts of ten minutes each turned every held
 * job into one after ~110 minutes).
 */
it('an outage longer than the retries and all attempts makes no dead letter: jobs are put back, attempts untouched, then stored', async () => {
  const pg = await ownPostgres('long_outage');
  const { logger, lines } = capturingLogger('writer-test');
  const h = await startWriterHarness(pg.url, { WRITER_HEARTBEAT_FLUSH_MS: '60000', WRITER_RETRY_MAX_MS: '300' }, logger);
  h.pool.on('error', () => undefined);
  try {
    await h.waitForJob(await h.enqueue([pushItem(fixture)]), 'completed');
    await pg.stop();
    const during = Array.from({ length: 4 }, () => pushItem(fixture));
    // One attempt each: before, the first run out of retries made each a dead letter.
    const ids = await Promise.all(during.map((p) => h.enqueue([p], { attempts: 1 })));
    await putBackTwice(h, ids);
    await pg.restart();
    await Promise.all(ids.map((id) => h.waitForJob(id, 'completed', 90_000)));
    const { rows } = await h.pool.query(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY push_id',
      [during.map((p) => p.push_id)],
    );
    expect(rows.map((r) => r.n)).toEqual(during.map(() => ELEMENTS));
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(/^writer_dead_letters_total 0$/m);
    expect(lines.some((l) => l.msg === 'push job put back to wait: PostgreSQL fails for every push (no attempt used up)')).toBe(
      true,
    );
  } finally {
    await h.close();
    await pg.stop();
  }
}, 150_000);

it('WRITER_PUT_BACK_MAX_HOURS=0: a job is never put back, and uses up its attempts as before the change', async () => {
  const pg = await ownPostgres('no_put_back');
  const h = await startWriterHarness(pg.url, {
    WRITER_HEARTBEAT_FLUSH_MS: '60000',
    WRITER_RETRY_MAX_MS: '300',
    WRITER_PUT_BACK_MAX_HOURS: '0',
  });
  h.pool.on('error', () => undefined);
  try {
    await h.waitForJob(await h.enqueue([pushItem(fixture)]), 'completed');
    await pg.stop();
    const id = await h.enqueue([pushItem(fixture)], { attempts: 1 });
    await h.waitForJob(id, 'failed', 30_000);
    expect((await h.queue.getJob(id))?.attemptsMade).toBe(1);
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(/^writer_jobs_put_back_total 0$/m);
  } finally {
    await h.close();
    await pg.stop();
  }
}, 60_000);

/**
 * A refusal at log-in (a password rotated without the writer's DATABASE_URL, the role's LOGIN
 * revoked) is no push's doing: with one collector's pushes the job is put back, its attempts
 * untouched, and stored once the writer may log in again. Before, "everyone's" needed the same
 * refusal for three collectors' pushes: a one- or two-collector install's jobs each used up their
 * attempts and became dead letters.
 */
it("a refused log-in is everyone's with a single collector: its jobs are put back, not dead letters, and stored once it may log in", async () => {
  const pg = await ownPostgres('refused_login');
  const admin = createPool(pg.url, { max: 1 });
  await admin.query('CREATE ROLE pga_writer LOGIN SUPERUSER');
  const url = new URL(pg.url);
  url.username = 'pga_writer';
  const { logger, lines } = capturingLogger('writer-test');
  const h = await startWriterHarness(url.toString(), { WRITER_HEARTBEAT_FLUSH_MS: '60000', WRITER_RETRY_MAX_MS: '300' }, logger);
  h.pool.on('error', () => undefined);
  const collector = randomUUID();
  try {
    await h.waitForJob(await h.enqueue([pushItem(fixture, collector)]), 'completed');
    // Its sessions ended and new ones refused (28000), as after a password rotation (28P01).
    await admin.query('ALTER ROLE pga_writer NOLOGIN');
    await admin.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pga_writer'");
    const during = Array.from({ length: 3 }, () => pushItem(fixture, collector));
    const ids = await Promise.all(during.map((p) => h.enqueue([p], { attempts: 1 })));
    await putBackTwice(h, ids);
    expect(lines.some((l) => l.msg === 'push job put back to wait: PostgreSQL fails for every push (no attempt used up)')).toBe(
      true,
    );
    await admin.query('ALTER ROLE pga_writer LOGIN');
    await Promise.all(ids.map((id) => h.waitForJob(id, 'completed', 90_000)));
    const { rows } = await admin.query(
      'SELECT push_id, count(*)::int AS n FROM collector_metrics WHERE push_id = ANY($1) GROUP BY push_id',
      [during.map((p) => p.push_id)],
    );
    expect(rows.map((r) => r.n)).toEqual(during.map(() => ELEMENTS));
    expect(await (await fetch(`${h.url}/metrics`)).text()).toMatch(/^writer_dead_letters_total 0$/m);
  } finally {
    await h.close().catch(() => undefined);
    await admin.end();
    await pg.stop();
  }
}, 150_000);

/**
 * PostgreSQL stopped under the scheduled jobs (partitions every second here): the outage is the one
 * "PostgreSQL unreachable" line and the one "reachable again". Partition maintenance also wrote
 * `partition bounds repair failed; retried next run`, an error with a stack, at every run while
 * PostgreSQL was away (its first step's ECONNREFUSED), beside the outage's lines.
 */
it('PostgreSQL away under the maintenance jobs: the outage is one line, and one when it is back', async () => {
  const pg = await ownPostgres('maintenance_outage');
  const { logger, lines } = capturingLogger('writer-test');
  const h = await startWriterHarness(
    pg.url,
    {
      WRITER_ROLLUP_FOLD_MS: '200',
      WRITER_SWEEP_INTERVAL_MS: '300',
      WRITER_MAINTENANCE_INTERVAL_MS: '1000',
      WRITER_HEARTBEAT_FLUSH_MS: '200',
    },
    logger,
  );
  h.pool.on('error', () => undefined);
  try {
    await waitUntil('partition maintenance ran', async () => lines.some((l) => l.msg === 'retention done'), 10_000, 100);
    const from = lines.length;
    await pg.stop();
    await new Promise((r) => setTimeout(r, 4000));
    await pg.restart();
    await waitUntil(
      'partition maintenance again',
      async () => lines.slice(from).some((l) => l.msg === 'retention done'),
      20_000,
      100,
    );
    const said = lines.slice(from).filter((l) => l.level >= 40 || /^PostgreSQL /.test(l.msg));
    expect(said.map((l) => l.msg.replace(/: .*$/, '').replace(/[\d.]+ s$/, 'N s'))).toEqual([
      'PostgreSQL unreachable',
      'PostgreSQL reachable again after N s',
    ]);
  } finally {
    await h.close();
    await pg.stop();
  }
}, 60_000);
