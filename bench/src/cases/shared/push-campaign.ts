import { randomBytes } from 'node:crypto';
import { runClosedLoop, runOpenLoop, type PhaseResult, type RequestSpec } from '../../load/drivers';
import { HttpConnection, type HttpAnswer } from '../../load/http-connection';
import type { PushBody } from '../../load/payloads';
import type { ScenarioContext } from '../../harness/scenario';
import type { BenchCollector } from './collectors';
import { GZIP_EVERY } from './workload';

/** What was acknowledged: push id → rows the push must become, and when the 200 arrived. */
export class AckLog {
  readonly expectedRows = new Map<string, number>();
  duplicatesAcked = 0;
  /** Called for every ack (e.g. the freshness probe samples some of them). */
  onAck?: (pushId: string, atMs: number) => void;
}

export interface PushTarget {
  host: string;
  port: number;
  collectors: BenchCollector[];
  bodies: PushBody[];
  acks: AckLog;
}

/** The edge answers `{"status":"accepted","push_id":"<uuid>",…}` (JSON.stringify: no spaces). */
const PUSH_ID_KEY = Buffer.from('"push_id":"');
const DUPLICATE_TRUE = Buffer.from('"duplicate":true');
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Opens `count` keep-alive connections to the target. */
export async function openConnections(target: PushTarget, count: number): Promise<HttpConnection[]> {
  const conns = Array.from({ length: count }, () => new HttpConnection(target.host, target.port));
  for (let i = 0; i < conns.length; i += 200) await Promise.all(conns.slice(i, i + 200).map((c) => c.open()));
  return conns;
}

/**
 * Builds push requests: request `seq` is sent as collector `seq` (mod the fleet), so the load is
 * spread evenly over every collector's token and rate limit whatever the connection count; a body
 * from the pool, every GZIP_EVERY-th one gzip, a unique Idempotency-Key.
 */
export function pushRequests(target: PushTarget, offset = 0) {
  const tag = randomBytes(6).toString('hex');
  const prefixes = target.collectors.map(
    (c) =>
      `POST /api/v1/metrics/push HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${c.token}\r\n` +
      `X-Collector-ID: ${c.id}\r\nContent-Type: application/json\r\n`,
  );
  const bodyOf = new Map<number, PushBody>();
  return {
    make(conn: number, seq: number): RequestSpec {
      const body = target.bodies[seq % target.bodies.length]!;
      const gzip = seq % GZIP_EVERY === 0;
      const payload = gzip ? body.gzip : body.json;
      bodyOf.set(conn, body);
      return {
        head:
          prefixes[(seq + offset) % prefixes.length]! +
          (gzip ? 'Content-Encoding: gzip\r\n' : '') +
          `Idempotency-Key: bench-${tag}-${seq}\r\nContent-Length: ${payload.length}\r\n\r\n`,
        body: payload,
      };
    },
    /** A 200 whose push id is recorded for the audit; a duplicate ack of a unique key is an error. */
    accept(answer: HttpAnswer, conn: number, atMs: number): boolean {
      if (answer.status !== 200 && answer.status !== 201) return false;
      // Byte searches on the answer (no decoding of the whole body, no regex): this runs per request.
      const at = answer.body.indexOf(PUSH_ID_KEY);
      const id =
        at < 0 ? '' : answer.body.toString('latin1', at + PUSH_ID_KEY.length, at + PUSH_ID_KEY.length + 36).toLowerCase();
      if (!UUID.test(id)) return false;
      if (answer.body.includes(DUPLICATE_TRUE) || target.acks.expectedRows.has(id)) {
        target.acks.duplicatesAcked++;
        return false;
      }
      target.acks.expectedRows.set(id, bodyOf.get(conn)?.elements.length ?? 1);
      target.acks.onAck?.(id, atMs);
      return true;
    },
  };
}

export interface CampaignPhase {
  name: string;
  /** Target arrival rate (open loop) or undefined (closed loop). */
  ratePerS?: number;
  fraction?: number;
  /** One of `derivedSteps`: the scenario reports it (its rate differs run by run). */
  derived?: boolean;
  result: PhaseResult;
}

export interface CampaignOptions {
  ctx: ScenarioContext;
  target: PushTarget;
  closedConcurrency: number;
  closedMs: number;
  /** Open-loop rates as fractions of this run's closed-loop maximum. */
  fractions: number[];
  /** Extra open-loop steps at fixed absolute rates (pushes/s), after the fractions. */
  absoluteRates?: number[];
  /**
   * Extra open-loop steps whose rate is known only once the closed loop and its `afterPhase` are
   * over (e.g. half of the sustained committed rate); called once, after that. They run first of
   * the open-loop steps, before the steps that overload on purpose (100 % and beyond, fixed rates)
   * leave the database busy with their aftermath.
   */
  derivedSteps?(): { name: string; rate: number }[];
  /**
   * Awaited just before each recorded phase starts (closed loop and every open-loop step, the
   * latter once its connections are open), with the step's arrival rate (open loop only).
   */
  beforePhase?(name: string, ratePerS?: number): void | Promise<void>;
  stepMs: number;
  /** Open-loop connections (one per collector, up to the fleet size). */
  openConnections: number;
  /** Runs after each phase, the unrecorded warm-up included (e.g. wait until the queue drained). */
  afterPhase?(phase: CampaignPhase): Promise<void>;
}

/**
 * Closed-loop maximum first, then open-loop steps at fixed fractions of that maximum, the last
 * at (or beyond) saturation: the latency-versus-load curve of one run.
 */
export async function runPushCampaign(o: CampaignOptions): Promise<CampaignPhase[]> {
  const { ctx, target } = o;
  const phases: CampaignPhase[] = [];
  const closedConns = await openConnections(target, o.closedConcurrency);
  // One unrecorded second first: JIT warm-up and every collector's token verified once (cached
  // afterwards), so the figures describe the steady state. Its pushes are still audited.
  const warm = pushRequests(target);
  ctx.progress.update(`${ctx.label}: warm-up`);
  const warmup = await runClosedLoop({ connections: closedConns, make: warm.make, accept: warm.accept, durationMs: 1000 });
  await o.afterPhase?.({ name: 'warm-up', result: warmup });
  warmup.recorder.destroy();
  const closedReq = pushRequests(target);
  await o.beforePhase?.('closed-loop');
  const closed = await runClosedLoop({
    connections: closedConns,
    make: closedReq.make,
    accept: closedReq.accept,
    durationMs: o.closedMs,
    onTick: (s) =>
      ctx.progress.update(
        `${ctx.label}: closed loop ×${o.closedConcurrency} ${(s.elapsedMs / 1000).toFixed(0)} s, ${s.ok} acked, ${s.errors} errors`,
      ),
  });
  closedConns.forEach((c) => c.close());
  phases.push({ name: 'closed-loop', result: closed });
  await o.afterPhase?.(phases.at(-1)!);
  const max = closed.okPerS;
  const openConns = await openConnections(target, o.openConnections);
  const steps: { fraction: number | undefined; rate: number; name: string; derived?: boolean }[] = [
    ...(o.derivedSteps?.() ?? []).map(({ name, rate }) => ({
      fraction: undefined,
      rate: Math.max(10, Math.round(rate)),
      name,
      derived: true,
    })),
    ...o.fractions.map((fraction) => ({
      fraction,
      rate: Math.max(10, Math.round(max * fraction)),
      name: `open ${Math.round(fraction * 100)} %`,
    })),
    ...(o.absoluteRates ?? []).map((rate) => ({ fraction: undefined, rate, name: `open ${rate}/s` })),
  ];
  for (const { fraction, rate, name, derived } of steps) {
    const req = pushRequests(target, 7);
    await o.beforePhase?.(name, rate);
    const result = await runOpenLoop({
      connections: openConns,
      make: req.make,
      accept: req.accept,
      ratePerS: rate,
      durationMs: o.stepMs,
      drainMs: 5_000,
      onTick: (s) =>
        ctx.progress.update(
          `${ctx.label}: ${name}${fraction === undefined && !derived ? '' : ` (${rate}/s)`} ${(s.elapsedMs / 1000).toFixed(0)} s, ${s.ok} acked, backlog ${s.backlog}`,
        ),
    });
    phases.push({
      name,
      ratePerS: rate,
      ...(fraction === undefined ? {} : { fraction }),
      ...(derived ? { derived } : {}),
      result,
    });
    await o.afterPhase?.(phases.at(-1)!);
  }
  openConns.forEach((c) => c.close());
  return phases;
}
