import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { LatencyRecorder } from '../../harness/latency-recorder';

/** How often the probe asks PostgreSQL; the freshness figures are accurate to about this. */
export const FRESHNESS_POLL_MS = 20;

/**
 * Freshness = time from the 200 to the moment a SELECT sees the push. A sample of acknowledged
 * push ids (at most `perSecond` per second) is polled every FRESHNESS_POLL_MS in ingest_ledger,
 * which the writer fills in the same transaction as the COPY, so a ledger row is visible exactly
 * when the push's metric rows are (and the ledger's primary key makes the probe cheap).
 */
export class FreshnessProbe {
  private readonly pending = new Map<string, { at: number; phase: string }>();
  private readonly recorders = new Map<string, LatencyRecorder>();
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private windowStart = 0;
  private inWindow = 0;
  phase = 'warm-up';

  constructor(
    private readonly databaseUrl: string,
    private readonly perSecond = 100,
  ) {}

  async start(): Promise<void> {
    this.client = new pg.Client({ connectionString: this.databaseUrl, application_name: 'bench-freshness' });
    // An idle client whose server goes away emits 'error'; unheard, that would end the bench.
    this.client.on('error', () => undefined);
    await this.client.connect();
    const loop = async () => {
      await this.poll().catch(() => undefined);
      if (this.client) this.timer = setTimeout(() => void loop(), FRESHNESS_POLL_MS);
    };
    void loop();
  }

  /** Offered every ack; keeps a sample. */
  onAck(pushId: string, atMs: number): void {
    if (atMs - this.windowStart >= 1000) {
      this.windowStart = atMs;
      this.inWindow = 0;
    }
    if (this.inWindow >= this.perSecond || this.pending.size >= 5000) return;
    this.inWindow++;
    this.pending.set(pushId, { at: atMs, phase: this.phase });
  }

  private async poll(): Promise<void> {
    if (!this.client || this.pending.size === 0) return;
    const ids = [...this.pending.keys()];
    const { rows } = await this.client.query<{ id: string }>(
      'SELECT push_id::text AS id FROM ingest_ledger WHERE push_id = ANY($1::uuid[])',
      [ids],
    );
    const now = performance.now();
    for (const { id } of rows) {
      const p = this.pending.get(id);
      if (!p) continue;
      this.pending.delete(id);
      let rec = this.recorders.get(p.phase);
      if (!rec) this.recorders.set(p.phase, (rec = new LatencyRecorder(now)));
      rec.recordOk(now, now - p.at);
    }
  }

  recorder(phase: string): LatencyRecorder | undefined {
    return this.recorders.get(phase);
  }

  /** Samples never seen (still pending when the probe stopped). */
  unseen(): number {
    return this.pending.size;
  }

  async stop(): Promise<void> {
    clearTimeout(this.timer);
    const c = this.client;
    this.client = undefined;
    await c?.end();
  }

  destroy(): void {
    for (const r of this.recorders.values()) r.destroy();
  }
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
 * Waits until `target` pushes are committed; resolves with the performance.now() time it happened,
 * or undefined when the count stopped moving for `stallMs`.
 */
export async function waitCommitted(
  databaseUrl: string,
  target: number,
  onProgress: (n: number) => void,
  stallMs = 20_000,
): Promise<number | undefined> {
  const c = new pg.Client({ connectionString: databaseUrl, application_name: 'bench-ledger' });
  await c.connect();
  try {
    let last = -1;
    let lastMove = performance.now();
    for (;;) {
      const n = Number((await c.query<{ n: string }>('SELECT count(*) AS n FROM ingest_ledger')).rows[0]!.n);
      const now = performance.now();
      onProgress(n);
      if (n >= target) return now;
      if (n !== last) {
        last = n;
        lastMove = now;
      } else if (now - lastMove > stallMs) return undefined;
      await new Promise((r) => setTimeout(r, 25));
    }
  } finally {
    await c.end();
  }
}
