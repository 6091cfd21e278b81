/** Reading the Prometheus text a service's `/metrics` answers. */
import { extraServiceEnv } from '../../harness/diagnostics';

/**
 * The Authorization header of a scrape of the services the bench starts: their METRICS_TOKEN comes
 * only from BENCH_SERVICE_ENV (the bench gives them no other environment); its first token, if any.
 */
export function metricsHeaders(env: Record<string, string | undefined> = process.env): Record<string, string> {
  const token = (extraServiceEnv(env).METRICS_TOKEN ?? '')
    .split(',')
    .map((t) => t.trim())
    .find(Boolean);
  return token ? { authorization: `Bearer ${token}` } : {};
}

/** A service's `/metrics` text (`url` without the path), with the services' METRICS_TOKEN if they have one. */
export async function scrapeMetrics(url: string, env: Record<string, string | undefined> = process.env): Promise<string> {
  const res = await fetch(`${url}/metrics`, { headers: metricsHeaders(env) });
  // Not the metrics: said as such rather than read as a text without the series (NaN, undefined).
  if (res.status === 401) throw new Error(`${url}/metrics answered 401: ${await res.text()}`);
  return res.text();
}

/**
 * Percentile `p` (0–1) of a Prometheus histogram in a service's /metrics text, as the upper bound of
 * the bucket it falls in (coarse, but it tells the edge's own wait apart from the network's).
 */
export function histogramQuantile(metricsText: string, name: string, p: number): number | undefined {
  const buckets: [number, number][] = [];
  for (const m of metricsText.matchAll(new RegExp(`^${name}_bucket\\{[^}]*le="([^"]+)"[^}]*\\} (\\d+(?:\\.\\d+)?)$`, 'gm')))
    buckets.push([m[1] === '+Inf' ? Infinity : Number(m[1]), Number(m[2])]);
  const total = buckets.at(-1)?.[1] ?? 0;
  if (total === 0) return undefined;
  return buckets.find(([, n]) => n >= p * total)?.[0];
}

/** The value of an unlabelled sample (a gauge, a counter, a histogram's `_sum`) in Prometheus text, or undefined. */
export function sampleValue(metricsText: string, name: string): number | undefined {
  const m = new RegExp(`^${name} ([0-9.eE+-]+)$`, 'm').exec(metricsText);
  return m ? Number(m[1]) : undefined;
}

/**
 * prom-client samples the event loop with a 10 ms timer (its default `eventLoopMonitoringPrecision`,
 * which the edge keeps) and its lag histogram holds the whole time between two samples: an idle
 * loop reads p99 ≈ 10.2 ms. What a request waited is the part beyond that interval, in ms.
 */
const PROM_CLIENT_LAG_SAMPLING_S = 0.01;
export const lagBeyondSampling = (seconds: number): number => Math.max(0, seconds - PROM_CLIENT_LAG_SAMPLING_S) * 1000;
