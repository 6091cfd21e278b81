import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { sampleValue, scrapeMetrics } from '../shared/prom-text';

/**
 * How often a drain is polled. Each poll is one scrape of the writer's /metrics (about 1 ms of the
 * writer's CPU), not a `count(*)` of ingest_ledger, which scans a table that grows through the run
 * and would compete with the writer for PostgreSQL during the drain the sustained figure includes.
 * A drain's end is known to within this.
 */
export const DRAIN_POLL_MS = 50;

/** The writer's counters (its /metrics): pushes committed, batches (transactions), jobs in them. */
export async function writerCounters(url: string): Promise<{ batches: number; jobs: number; pushes: number }> {
  const text = await scrapeMetrics(url);
  const value = (name: string) => sampleValue(text, name) ?? NaN;
  return {
    batches: value('writer_batches_total'),
    jobs: value('writer_batch_jobs_sum'),
    pushes: value('writer_pushes_stored_total'),
  };
}

/** Rows in ingest_ledger (pushes committed since the run's reset). */
export async function committedPushes(databaseUrl: string): Promise<number> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-ledger' });
  await c.connect();
  try {
    return Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM ingest_ledger')).rows[0]!.n);
  } finally {
    await c.end();
  }
}

/**
 * Pushes committed, read cheaply from the writer's `writer_pushes_stored_total` (incremented after
 * each COMMIT, so a push it counts is visible) and tied to ingest_ledger once, at a moment nothing
 * is in flight (the writer runs across runs, the ledger is emptied before each). Without a writer
 * URL, or when a scrape fails, ingest_ledger is counted instead.
 */
export class CommitCounter {
  private constructor(
    readonly databaseUrl: string,
    private readonly writerUrl: string | undefined,
    /** Ledger rows minus the writer's counter, measured while idle. */
    private readonly offset: number | undefined,
  ) {}

  /** Call while no push is on its way (after the run's reset, before any load). */
  static async start(databaseUrl: string, writerUrl?: string): Promise<CommitCounter> {
    const stored = writerUrl
      ? await writerCounters(writerUrl)
          .then((c) => c.pushes)
          .catch(() => NaN)
      : NaN;
    const offset = Number.isFinite(stored) ? (await committedPushes(databaseUrl)) - stored : undefined;
    return new CommitCounter(databaseUrl, writerUrl, offset);
  }

  /** Committed pushes per the writer's counter (one /metrics scrape), or per PostgreSQL. */
  async polled(): Promise<number> {
    if (this.writerUrl && this.offset !== undefined) {
      const stored = await writerCounters(this.writerUrl)
        .then((c) => c.pushes)
        .catch(() => NaN);
      if (Number.isFinite(stored)) return stored + this.offset;
    }
    return this.inLedger();
  }

  /** Committed pushes per PostgreSQL (count of ingest_ledger). */
  inLedger(): Promise<number> {
    return committedPushes(this.databaseUrl);
  }
}

/**
 * Waits until `target` pushes are committed, polling every DRAIN_POLL_MS; resolves with the
 * performance.now() time of the poll that first saw them, or undefined when the count stopped
 * moving for `stallMs`. The count is then verified in PostgreSQL: should the ledger hold fewer
 * rows than the counter said, the wait goes on counting the ledger itself.
 */
export async function waitCommitted(
  counter: CommitCounter,
  target: number,
  onProgress: (n: number) => void,
  stallMs = 20_000,
): Promise<number | undefined> {
  let last = -1;
  let lastMove = performance.now();
  let poll = () => counter.polled();
  for (;;) {
    const n = await poll();
    const now = performance.now();
    onProgress(n);
    if (n >= target) {
      if ((await counter.inLedger()) >= target) return now;
      poll = () => counter.inLedger();
    }
    if (n !== last) {
      last = n;
      lastMove = now;
    } else if (now - lastMove > stallMs) return undefined;
    await new Promise((r) => setTimeout(r, DRAIN_POLL_MS));
  }
}
