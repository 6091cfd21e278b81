/**
 * What pg-phase-cost.ts and ledger-size-cost.ts share: PostgreSQL's CPU split by statement of the
 * writer's transaction (one pooled connection, its backend's schedstat read between statements), the
 * background processes' CPU, WAL per statement (pg_stat_statements), and the per-push figures.
 */
import { readFileSync } from 'node:fs';
import type { Pool, PoolClient } from 'pg';
import { processTable } from '@pga/local-stack';

/** On-CPU nanoseconds of a process (schedstat's first field: finer than /proc/<pid>/stat's ticks). */
export const cpuNs = (pid: number) => Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]);

/** On-CPU ns of PostgreSQL's postmaster and its children but `exclude`, by process title (checkpointer …). */
export function postgresCpuByRole(postmaster: number, exclude: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const p of processTable()) {
    if (p.pid === exclude || (p.pid !== postmaster && p.ppid !== postmaster)) continue;
    try {
      const title = readFileSync(`/proc/${p.pid}/cmdline`, 'utf8')
        .split('\0')[0]!
        .replace(/^postgres: /, '');
      const role = p.pid === postmaster ? 'postmaster' : title.replace(/ .*$/, '');
      out.set(role, (out.get(role) ?? 0) + cpuNs(p.pid));
    } catch {
      // gone in between
    }
  }
  return out;
}

/** Which statement of the writer's transaction a SQL text is. */
export const statementLabel = (sql: string) => {
  const s = sql.replace(/\s+/g, ' ').trim();
  if (s.startsWith('COPY')) return 'COPY';
  if (s.includes('ingest_ledger')) return 'ledger';
  if (s.includes('collector_metrics_rollup_batch')) return 'rollup row';
  if (s.includes('UPDATE collectors')) return 'collectors update';
  if (s.includes('pga_fold_rollup_deltas')) return 'fold';
  return s.slice(0, 20);
};

/**
 * Backend CPU per statement of `pool`'s one connection (a pool of max 1): every statement, while
 * measuring, opens a span and closes the one before it. The session is idle at that moment
 * (storeBatch awaits each statement), so the backend's CPU time read then splits exactly. Call
 * `instrument` on a client checked out again (a discarded one is replaced) and `close` after the
 * last statement.
 */
export async function statementSpans(pool: Pool) {
  const spans = new Map<string, { ns: number; calls: number }>();
  let open: { name: string; ns: number } | null = null;
  let measuring = false;
  const instrumented = new WeakSet<PoolClient>();
  const close = () => {
    if (!open) return;
    const s = spans.get(open.name) ?? { ns: 0, calls: 0 };
    s.ns += cpuNs(backend) - open.ns;
    s.calls++;
    spans.set(open.name, s);
    open = null;
  };
  const instrument = (client: PoolClient) => {
    if (instrumented.has(client)) return;
    instrumented.add(client);
    const query = client.query.bind(client) as (...a: unknown[]) => unknown;
    (client as unknown as { query: unknown }).query = (...args: unknown[]) => {
      if (measuring) {
        const q = args[0] as string | { text?: string };
        close();
        open = { name: statementLabel(typeof q === 'string' ? q : (q.text ?? 'COPY')), ns: cpuNs(backend) };
      }
      return query(...args);
    };
  };
  const c = await pool.connect();
  const backend = (await c.query<{ p: number }>('SELECT pg_backend_pid() AS p')).rows[0]!.p;
  instrument(c);
  c.release();
  return {
    backend,
    spans,
    close,
    measure(on: boolean) {
      measuring = on;
    },
    /** Instruments the client the pool hands out next (the same one unless it was discarded). */
    async reinstrument() {
      const client = await pool.connect();
      instrument(client);
      client.release();
    },
  };
}

/** WAL bytes and full-page images by statement since the last pg_stat_statements_reset(). */
export async function walByStatement(side: Pool): Promise<Map<string, { wal: number; fpi: number }>> {
  const { rows } = await side.query<{ query: string; wal: number; fpi: number }>(
    'SELECT query, wal_bytes::float8 AS wal, wal_fpi::float8 AS fpi FROM pg_stat_statements WHERE wal_bytes > 0',
  );
  const out = new Map<string, { wal: number; fpi: number }>();
  for (const r of rows) {
    const w = out.get(statementLabel(r.query)) ?? { wal: 0, fpi: 0 };
    w.wal += r.wal;
    w.fpi += r.fpi;
    out.set(statementLabel(r.query), w);
  }
  return out;
}

/**
 * Per push of `n`: each statement's backend µs (and its WAL bytes, and full-page images when
 * `fpi`), the backend's total, and each background process's µs (0.05 and up).
 */
export function perPush(
  n: number,
  spans: Map<string, { ns: number }>,
  walOf: Map<string, { wal: number; fpi: number }>,
  bg: { before: Map<string, number>; after: Map<string, number> },
  { fpi = false } = {},
): Record<string, number> {
  const out: Record<string, number> = {};
  let backendNs = 0;
  for (const [name, s] of spans) {
    out[`${name} µs`] = +(s.ns / 1000 / n).toFixed(1);
    const w = walOf.get(name);
    if (w) {
      out[`${name} WAL B`] = Math.round(w.wal / n);
      if (fpi) out[`${name} FPI`] = +(w.fpi / n).toFixed(3);
    }
    backendNs += s.ns;
  }
  out['backend µs'] = +(backendNs / 1000 / n).toFixed(1);
  for (const [role, ns] of bg.after) {
    const d = (ns - (bg.before.get(role) ?? 0)) / 1000 / n;
    if (d >= 0.05) out[`bg ${role} µs`] = +d.toFixed(1);
  }
  return out;
}
