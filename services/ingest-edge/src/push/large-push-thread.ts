import { fileURLToPath } from 'node:url';
import { Worker, type WorkerOptions } from 'node:worker_threads';
import { AppError, type ErrorCode } from '@pga/contracts';
import type { Logger } from '@pga/logger';
import type { EdgeMetrics } from '../ops/edge-metrics';
import type { PreparedPush, PushRequest } from './prepare-push';

/**
 * Bodies from this size on are prepared in the large-push thread, and go to Redis apart from their
 * job, in pieces (the packer's large pushes; contracts' PushItemRef). Scanning and hashing a body
 * costs ~10 ms per MiB on the event loop here (a 64 MiB push: most of a second, during which every
 * other request on that edge process waited); below 1 MiB the thread's round trip (~0.2 ms) would
 * cost more than it saves.
 */
export const LARGE_PUSH_BYTES = 1024 * 1024;

export interface LargePushRequest {
  id: number;
  /** The body's bytes, handed over (transferred) to the thread. */
  body: Uint8Array;
  collectorId: string;
  idempotencyHeader: string;
}

export type LargePushReply =
  /** The body comes back (transferred) with what was worked out from it. */
  | { id: number; prepared: PreparedPush; body: Uint8Array }
  | { id: number; error: { code: ErrorCode; message: string } }
  /** Not a refusal: a fault (logged by the route, answered with a plain 500). */
  | { id: number; internal: string };

export interface LargePush extends PreparedPush {
  /** The body, handed back by the thread. */
  body: Buffer;
}

/**
 * One worker thread per edge process that prepares large push bodies (`preparePush`), so a 64 MiB
 * push no longer holds its process's event loop for most of a second. The body is transferred, not
 * copied, both ways: the caller must use the one `prepare` resolves with, not the one it passed.
 * Started on the first large push and ended after `idleMs` without one (its isolate's memory,
 * ~10 MiB, given back); a thread that dies fails what it held with 503 (Retry-After) and the next
 * large push starts a new one. Large pushes are prepared one after another.
 */
export class LargePushThread {
  private worker: Worker | undefined;
  private nextId = 0;
  private readonly pending = new Map<number, { started: number; resolve(push: LargePush): void; reject(err: Error): void }>();
  private closed = false;
  private idle: NodeJS.Timeout | undefined;

  constructor(
    private readonly deps: {
      logger: Logger;
      metrics: Pick<EdgeMetrics, 'largePushPrepare'>;
      idleMs?: number;
    },
  ) {}

  /** Whether the thread is running now. */
  get running(): boolean {
    return this.worker !== undefined;
  }

  prepare(req: PushRequest): Promise<LargePush> {
    if (this.closed) return Promise.reject(unavailable());
    clearTimeout(this.idle);
    const worker = this.start();
    const id = ++this.nextId;
    return new Promise<LargePush>((resolve, reject) => {
      this.pending.set(id, { started: performance.now(), resolve, reject });
      try {
        const body = new Uint8Array(req.body.buffer, req.body.byteOffset, req.body.byteLength);
        const message: LargePushRequest = {
          id,
          body,
          collectorId: req.collectorId,
          idempotencyHeader: req.idempotencyHeader,
        };
        // A body sharing its memory with others (a slice of a pooled or larger buffer) is copied.
        const own = body.byteOffset === 0 && body.byteLength === body.buffer.byteLength;
        worker.postMessage(message, own ? [body.buffer as ArrayBuffer] : []);
      } catch (err) {
        // Not sent (a body already handed over elsewhere cannot be): nothing waits for the thread.
        this.pending.delete(id);
        reject(err instanceof Error ? err : new Error(String(err)));
      }
    });
  }

  /** Ends the thread (SIGTERM drain: called once no request is in flight). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.idle);
    const worker = this.worker;
    this.worker = undefined;
    if (worker) await worker.terminate();
    this.failAll();
  }

  private start(): Worker {
    if (this.worker) return this.worker;
    const worker = new Worker(...workerEntry());
    worker.unref();
    worker.on('message', (reply: LargePushReply) => {
      const waiting = this.pending.get(reply.id);
      if (waiting) {
        this.pending.delete(reply.id);
        this.deps.metrics.largePushPrepare.observe((performance.now() - waiting.started) / 1000);
        if ('error' in reply) waiting.reject(new AppError(reply.error.code, reply.error.message));
        else if ('internal' in reply) waiting.reject(new Error(`large-push thread: ${reply.internal}`));
        else
          waiting.resolve({
            ...reply.prepared,
            body: Buffer.from(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength),
          });
      }
      if (this.pending.size === 0) this.idleEnd(worker);
    });
    const lost = (err: unknown) => {
      if (this.worker !== worker) return;
      this.worker = undefined;
      if (!this.closed) this.deps.logger.error({ err }, 'large-push thread ended; starting a new one for the next large push');
      this.failAll();
    };
    worker.on('error', lost);
    worker.on('exit', (code) => lost(new Error(`exit code ${code}`)));
    this.worker = worker;
    return worker;
  }

  /** Ends the thread after `idleMs` unless a large push comes first (`prepare` clears the timer). */
  private idleEnd(worker: Worker): void {
    clearTimeout(this.idle);
    this.idle = setTimeout(() => {
      if (this.worker !== worker || this.pending.size > 0) return;
      this.worker = undefined;
      void worker.terminate();
    }, this.deps.idleMs ?? IDLE_MS);
    this.idle.unref();
  }

  private failAll(): void {
    for (const waiting of this.pending.values()) waiting.reject(unavailable());
    this.pending.clear();
  }
}

/** A thread without a large push for this long is ended. */
const IDLE_MS = 60_000;

const unavailable = () => new AppError('UNAVAILABLE', 'the edge could not process the push; retry', { retryAfterSeconds: 1 });

/**
 * The thread's entry: the bundle built next to dist/main.mjs (npm start, the bench), or from source
 * (tests, tsx) the TypeScript entry, loaded through tsx by a small bootstrap.
 */
function workerEntry(): [URL, WorkerOptions] {
  if (!fileURLToPath(import.meta.url).endsWith('.ts')) return [new URL('./large-push-worker.mjs', import.meta.url), {}];
  const entry = new URL('../large-push-worker.ts', import.meta.url).href;
  return [new URL('./tsx-worker.mjs', import.meta.url), { workerData: { entry } }];
}
