import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { LatencyRecorder } from '../../harness/latency-recorder';

/** How often the probe asks PostgreSQL; the freshness figures are accurate to about this. */
export const FRESHNESS_POLL_MS = 20;

/**
 * Freshness = time from the 200 to the moment a SELECT sees the push. About `perSecond`
 * acknowledged pushes per second are sampled, each ack with the same probability (`perSecond` ÷
 * the phase's arrival rate), so the samples spread over the whole second rather than bunching in
 * its first acks. They are polled every FRESHNESS_POLL_MS in ingest_ledger, which the writer fills
 * in the same transaction as the COPY, so a ledger row is visible exactly when the push's metric
 * rows are (and the ledger's primary key makes the probe cheap).
 */
export class FreshnessProbe {
  private readonly pending = new Map<string, { at: number; phase: string }>();
  private readonly recorders = new Map<string, LatencyRecorder>();
  private client: pg.Client | undefined;
  private timer: NodeJS.Timeout | undefined;
  private phase = 'warm-up';
  /** Arrival rate of the phase (pushes/s), when it has one (open loop). */
  private ratePerS: number | undefined;
  /** The current 1-s window of acks: when it began, its acks, the samples kept; the previous one's acks. */
  private windowStart = 0;
  private inWindow = 0;
  private keptInWindow = 0;
  private lastWindow = 0;

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

  /**
   * Samples from now on belong to `name`. With `ratePerS` (an open-loop step) every ack is kept
   * with probability perSecond ÷ ratePerS; without (closed loop), the rate is estimated from the
   * previous second's acks, and at most 2 × perSecond are kept in any second.
   */
  setPhase(name: string, ratePerS?: number): void {
    this.phase = name;
    this.ratePerS = ratePerS;
  }

  /** Offered every ack; keeps a sample. */
  onAck(pushId: string, atMs: number): void {
    if (atMs - this.windowStart >= 1000) {
      this.lastWindow = atMs - this.windowStart < 2000 ? this.inWindow : 0;
      this.windowStart = atMs;
      this.inWindow = 0;
      this.keptInWindow = 0;
    }
    this.inWindow++;
    const rate = this.ratePerS ?? this.lastWindow;
    const probability = rate > 0 ? Math.min(1, this.perSecond / rate) : 1;
    if (Math.random() >= probability || this.pending.size >= 5000) return;
    if (this.ratePerS === undefined && this.keptInWindow >= 2 * this.perSecond) return;
    this.keptInWindow++;
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

  /** Samples never seen (still pending when the probe stopped), by phase. */
  unseen(): Map<string, number> {
    const byPhase = new Map<string, number>();
    for (const { phase } of this.pending.values()) byPhase.set(phase, (byPhase.get(phase) ?? 0) + 1);
    return byPhase;
  }

  /** Stops polling after one last poll, so that a sample committed since the previous one counts as seen. */
  async stop(): Promise<void> {
    clearTimeout(this.timer);
    await this.poll().catch(() => undefined);
    const c = this.client;
    this.client = undefined;
    await c?.end();
  }

  destroy(): void {
    for (const r of this.recorders.values()) r.destroy();
  }
}
