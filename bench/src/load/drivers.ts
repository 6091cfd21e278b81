import { performance } from 'node:perf_hooks';
import { startGeneratorMeter } from '../harness/generator-meter';
import { LatencyRecorder } from '../harness/latency-recorder';
import type { GeneratorUsage } from '../harness/model';
import type { HttpAnswer, HttpConnection } from './http-connection';

export interface RequestSpec {
  head: string;
  body?: Buffer;
}

export interface LoadPhase {
  /** The pool; request `seq` on connection `i` is built by `make(i, seq)`. */
  connections: HttpConnection[];
  make(connIndex: number, seq: number): RequestSpec;
  /** Decides success and may record what came back (e.g. the push id); default: status 200/201. */
  accept?(answer: HttpAnswer, connIndex: number, doneAtMs: number): boolean;
  durationMs: number;
  /** How long in-flight and queued requests may still finish after the window; default 10 s. */
  drainMs?: number;
  /** Called about every 250 ms with the phase's progress. */
  onTick?(state: { elapsedMs: number; ok: number; errors: number; backlog: number }): void;
}

export interface PhaseResult {
  recorder: LatencyRecorder;
  ok: number;
  errors: number;
  /** Requests the open-loop schedule called for but that were never sent (backlog at the end). */
  unsent: number;
  /** ok / window length (s): answers counted until the last answer of the window's requests. */
  okPerS: number;
  elapsedMs: number;
  /** performance.now() when the phase started. */
  startedAtMs: number;
  generator: GeneratorUsage;
}

const isSuccess = (a: HttpAnswer) => a.status === 200 || a.status === 201;

function sendOn(
  phase: LoadPhase,
  recorder: LatencyRecorder,
  conn: number,
  seq: number,
  intendedMs: number,
  done: (conn: number) => void,
): void {
  const req = phase.make(conn, seq);
  phase.connections[conn]!.request(req.head, req.body, (err, answer) => {
    const now = performance.now();
    if (err || !answer) recorder.recordError(now, (err as NodeJS.ErrnoException | undefined)?.code ?? 'socket error');
    else if ((phase.accept ?? isSuccess)(answer, conn, now)) recorder.recordOk(now, now - intendedMs);
    else recorder.recordError(now, String(answer.status));
    done(conn);
  });
}

/**
 * Closed loop: every connection sends its next request as soon as the previous one is answered.
 * Measures the maximum throughput at that concurrency; its latencies are service times, not what
 * a client at a fixed rate would see (that is the open loop's job).
 */
export function runClosedLoop(phase: LoadPhase): Promise<PhaseResult> {
  const start = performance.now();
  const recorder = new LatencyRecorder(start);
  const meter = startGeneratorMeter();
  const endAt = start + phase.durationMs;
  let seq = 0;
  let inFlight = 0;
  return new Promise((resolve) => {
    const ticker = setInterval(
      () => phase.onTick?.({ elapsedMs: performance.now() - start, ok: recorder.ok, errors: recorder.errors, backlog: 0 }),
      250,
    );
    const finish = () => {
      clearInterval(ticker);
      const elapsedMs = performance.now() - start;
      resolve({
        recorder,
        ok: recorder.ok,
        errors: recorder.errors,
        unsent: 0,
        okPerS: recorder.ok / (elapsedMs / 1000),
        elapsedMs,
        startedAtMs: start,
        generator: meter.stop(),
      });
    };
    const next = (conn: number) => {
      const now = performance.now();
      if (now >= endAt) {
        inFlight--;
        if (inFlight === 0) finish();
        return;
      }
      sendOn(phase, recorder, conn, seq++, now, next);
    };
    inFlight = phase.connections.length;
    for (let i = 0; i < phase.connections.length; i++) next(i);
  });
}

/**
 * Open loop at a fixed arrival rate: request k is due at start + k/rate whether or not earlier ones
 * were answered, and its latency is measured from that due time (no coordinated omission: a stalled
 * server makes the queued requests' latencies grow, it does not slow the schedule down). A request
 * waits in the generator's queue only while every connection is busy.
 */
export function runOpenLoop(phase: LoadPhase & { ratePerS: number }): Promise<PhaseResult> {
  const start = performance.now();
  const recorder = new LatencyRecorder(start);
  const meter = startGeneratorMeter();
  const intervalMs = 1000 / phase.ratePerS;
  const total = Math.floor((phase.durationMs / 1000) * phase.ratePerS);
  const drainUntil = start + phase.durationMs + (phase.drainMs ?? 10_000);
  // Free connections in a FIFO ring: the next request goes out on the connection idle longest, so
  // every connection of the fleet is used in turn, as each collector of a real fleet pushes on its
  // own. (A stack used the same few connections while the others sat idle until the server's idle
  // timeout closed hundreds of them at once, in the middle of a step.)
  const nConns = phase.connections.length;
  const free = new Int32Array(nConns);
  for (let i = 0; i < nConns; i++) free[i] = i;
  let freeHead = 0;
  let freeLen = nConns;
  // A ring of intended send times; grows as needed.
  let queue = new Float64Array(1024);
  let qHead = 0;
  let qLen = 0;
  let issued = 0;
  let seq = 0;
  let inFlight = 0;
  let finished = false;
  return new Promise((resolve) => {
    const ticker = setInterval(
      () => phase.onTick?.({ elapsedMs: performance.now() - start, ok: recorder.ok, errors: recorder.errors, backlog: qLen }),
      250,
    );
    const finish = () => {
      if (finished) return;
      finished = true;
      clearInterval(ticker);
      clearTimeout(timer);
      const unsent = qLen + (total - issued);
      const elapsedMs = performance.now() - start;
      resolve({
        recorder,
        ok: recorder.ok,
        errors: recorder.errors,
        unsent,
        okPerS: recorder.ok / (Math.max(elapsedMs, phase.durationMs) / 1000),
        elapsedMs,
        startedAtMs: start,
        generator: meter.stop(),
      });
    };
    const enqueue = (t: number) => {
      if (qLen === queue.length) {
        const bigger = new Float64Array(queue.length * 2);
        for (let i = 0; i < qLen; i++) bigger[i] = queue[(qHead + i) % queue.length]!;
        queue = bigger;
        qHead = 0;
      }
      queue[(qHead + qLen) % queue.length] = t;
      qLen++;
    };
    const dispatch = () => {
      while (qLen > 0 && freeLen > 0) {
        const intended = queue[qHead]!;
        qHead = (qHead + 1) % queue.length;
        qLen--;
        inFlight++;
        const conn = free[freeHead]!;
        freeHead = (freeHead + 1) % nConns;
        freeLen--;
        sendOn(phase, recorder, conn, seq++, intended, done);
      }
    };
    const done = (conn: number) => {
      inFlight--;
      free[(freeHead + freeLen) % nConns] = conn;
      freeLen++;
      if (performance.now() > drainUntil) qLen = 0; // give up on the backlog: counted as unsent
      dispatch();
      if (issued >= total && qLen === 0 && inFlight === 0) finish();
    };
    let timer: NodeJS.Timeout;
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor((now - start) / intervalMs) + 1);
      while (issued < due) enqueue(start + issued++ * intervalMs);
      dispatch();
      if (issued < total) timer = setTimeout(tick, Math.max(0, start + issued * intervalMs - performance.now()));
      else if (qLen === 0 && inFlight === 0) finish();
      else timer = setTimeout(drainCheck, 100);
    };
    const drainCheck = () => {
      if (performance.now() > drainUntil) {
        qLen = 0;
        if (inFlight === 0) return finish();
        // in-flight requests whose answers never come are abandoned
        if (performance.now() > drainUntil + 5_000) return finish();
      }
      timer = setTimeout(drainCheck, 100);
    };
    tick();
  });
}
