import { HttpConnection } from '../../load/http-connection';
import { runOpenLoop } from '../../load/drivers';
import { startGeneratorMeter } from '../../harness/generator-meter';
import { sampleTrees } from '../../harness/proc';
import type { Scenario } from '../../harness/scenario';
import { benchCollectors } from '../shared/collectors';
import { AckLog, openConnections, pushRequests } from '../shared/push-campaign';
import { bodyPool2k } from '../shared/workload';
import { pipelineMissing, startPipeline } from '../ingest-e2e/ingest-e2e';

const EDGE = 'ingest-edge';
const MiB = 1024 * 1024;

const edgeRss = (pid: number) => (sampleTrees({ edge: pid }).edge?.rssBytes ?? 0) / MiB;

/**
 * connections: a fleet of idle keep-alive collector connections (each sent one heartbeat, then
 * idles) held open against the edge, plus a trickle of pushes on other connections: the edge's
 * memory for the fleet and the trickle's latency while it is held.
 */
export const connections: Scenario = {
  name: 'connections',
  goal: '10,000 idle keep-alive collector connections held against the edge plus a trickle of pushes: edge RSS and the trickle’s p99.',
  figures: [
    { key: 'connections', label: 'idle keep-alive connections opened', unit: 'conn', better: 'higher' },
    { key: 'open_after_heartbeats', label: 'open once every heartbeat was answered', unit: 'conn', better: 'higher' },
    { key: 'still_open', label: 'still open at the end of the trickle', unit: 'conn', better: 'higher' },
    { key: 'open_s', label: 'time to open them and send one heartbeat each', unit: 's', better: 'lower' },
    { key: 'rss_before_mb', label: 'edge RSS before, freshly started (all edge processes)', unit: 'MiB', better: 'lower' },
    // Measured in MiB (2^20 bytes); the limit is 300 MB (10^6 bytes) = 286 MiB.
    {
      key: 'rss_held_mb',
      label: 'edge RSS once every heartbeat was answered',
      unit: 'MiB',
      better: 'lower',
      target: '< 286 MiB (300 MB)',
    },
    { key: 'kib_per_conn', label: 'edge memory per connection open at that moment', unit: 'KiB', better: 'lower' },
    { key: 'trickle_acked_per_s', label: 'trickle: acknowledged pushes/s', unit: 'push/s', better: 'higher' },
    { key: 'trickle_p50_ms', label: 'trickle: ack latency p50', unit: 'ms', better: 'lower' },
    { key: 'trickle_p99_ms', label: 'trickle: ack latency p99', unit: 'ms', better: 'lower' },
  ],
  unavailable: pipelineMissing,
  async setup(ctx) {
    await benchCollectors(ctx, 1000);
    // The edge may hold more sockets than a default 1,024-descriptor limit allows.
    await startPipeline(ctx, {}, 20_000);
  },
  async run(ctx) {
    const collectors = await benchCollectors(ctx, 1000);
    // A fresh edge every run: memory a previous run's fleet left behind would blur the RSS figures.
    await ctx.stack.stopService(EDGE);
    const edge = await startPipeline(ctx, {}, 20_000);
    const count = 10_000;
    await new Promise((r) => setTimeout(r, 1000)); // let start-up allocations settle
    const rssBefore = edgeRss(edge.pid);
    const fleet = Array.from({ length: count }, () => new HttpConnection('127.0.0.1', edge.port));
    const heartbeat = JSON.stringify({ status: 'active', metrics_count: 12, collection_time_ms: 85, version: 'bench' });
    const meter = startGeneratorMeter();
    const t0 = performance.now();
    let ok = 0;
    // 1,000 at a time: open the TCP connections, then one heartbeat on each (a server-side idle
    // timeout starts counting at connect, so connecting everything first would lose the early ones).
    for (let i = 0; i < count; i += 1000) {
      await Promise.all(fleet.slice(i, i + 1000).map((c) => c.open().catch(() => undefined)));
      await Promise.all(
        fleet.slice(i, i + 1000).map(
          (conn, j) =>
            new Promise<void>((resolve) => {
              const c = collectors[(i + j) % collectors.length]!;
              if (!conn.connected) return resolve();
              conn.request(
                `POST /api/v1/collectors/${c.id}/heartbeat HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${c.token}\r\n` +
                  `Content-Type: application/json\r\nContent-Length: ${heartbeat.length}\r\n\r\n`,
                Buffer.from(heartbeat),
                (err, answer) => {
                  if (!err && answer?.status === 200) ok++;
                  resolve();
                },
              );
            }),
        ),
      );
      ctx.progress.update(`${ctx.label}: ${ok}/${count} heartbeats answered`);
    }
    const openS = (performance.now() - t0) / 1000;
    const openGen = meter.stop();
    const rssHeld = edgeRss(edge.pid);
    const openAfterHeartbeats = fleet.filter((c) => c.connected).length;

    // The trickle: 200 pushes/s on 20 other connections, measured open-loop.
    const acks = new AckLog();
    const target = { host: '127.0.0.1', port: edge.port, collectors, bodies: bodyPool2k(), acks };
    const trickleConns = await openConnections(target, 20);
    const req = pushRequests(target);
    const trickle = await runOpenLoop({
      connections: trickleConns,
      make: req.make,
      accept: req.accept,
      ratePerS: 200,
      durationMs: ctx.mode === 'full' ? 20_000 : 2_000,
      drainMs: 3_000,
      onTick: (s) => ctx.progress.update(`${ctx.label}: trickle 200/s with ${count} idle connections, ${s.ok} acked`),
    });
    const stillOpen = fleet.filter((c) => c.connected).length;
    fleet.forEach((c) => c.close());
    trickleConns.forEach((c) => c.close());
    const s = trickle.recorder.summary();
    const timeline = trickle.recorder.timeline();
    const spectra = trickle.recorder.histogramBins();
    trickle.recorder.destroy();
    const errors = Object.fromEntries(trickle.recorder.errorsByStatus);
    return {
      figures: {
        connections: { value: ok, generator: openGen },
        open_after_heartbeats: { value: openAfterHeartbeats, generator: openGen },
        still_open: { value: stillOpen },
        open_s: { value: openS, generator: openGen },
        rss_before_mb: { value: rssBefore },
        rss_held_mb: { value: rssHeld, generator: openGen },
        // Per connection still open when the RSS was taken (an idle timeout may have closed some).
        kib_per_conn: { value: ((rssHeld - rssBefore) * 1024) / Math.max(1, openAfterHeartbeats), generator: openGen },
        trickle_acked_per_s: { value: trickle.okPerS, generator: trickle.generator },
        trickle_p50_ms: { value: s.p50, generator: trickle.generator },
        trickle_p99_ms: { value: s.p99, generator: trickle.generator },
      },
      timelines: { trickle: timeline },
      bins: { trickle: spectra },
      errors,
      notes: [
        'each connection sends one heartbeat (as collector i mod 1,000) and then idles; RSS is summed over the edge’s process tree',
        'a server-side idle timeout closing connections shows as "still open" below "opened"',
      ],
    };
  },
  async teardown(ctx) {
    await ctx.stack.stopService(EDGE);
    await ctx.stack.stopService('writer');
  },
};
