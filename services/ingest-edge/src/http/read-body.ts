import type { HttpResponse } from 'uWebSockets.js';
import { AppError } from '@pga/contracts';

/** The answer when a body (or its inflated copy) would take the in-flight budget past its limit. */
export const overBudget = () => new AppError('UNAVAILABLE', 'edge is over its memory budget', { retryAfterSeconds: 1 });

/** Bytes of request bodies currently held by this process (the in-flight budget of issue 4 §3). */
export class InflightBudget {
  used = 0;
  constructor(readonly limit: number) {}
  /** Reserves `n` bytes, or returns false when that would exceed the budget. */
  take(n: number): boolean {
    if (this.used + n > this.limit) return false;
    this.used += n;
    return true;
  }
  give(n: number): void {
    this.used -= n;
  }
  /** Counts `n` bytes already in memory (never refused: they exist whatever the budget says). */
  hold(n: number): void {
    this.used += n;
  }
}

/** A declared body is read into one buffer of its size once this much of it has arrived. */
const PREALLOCATE_BYTES = 1024 * 1024;

/**
 * A body still being kept restarts uWS.js's idle timeout once this much more of it has arrived (and
 * at most once a second): a body is cut off only once 8–12 s pass with less than this arriving (the
 * timeout's 10 s, checked in 4 s ticks): one arriving faster than 1 KiB/s never is. uWS.js alone
 * restarts the timeout only after 160 KiB more (HttpContext.h HTTP_RECEIVE_THROUGHPUT_BYTES × 10 s):
 * a push arriving slower than ~16 KiB/s (a 100 kbit/s uplink sends 12.5) was cut off without an
 * answer 8–12 s after its last 160 KiB, and its collector retried it forever. A refused body (its
 * rest only counted: `discard`, a client without a token included) keeps uWS.js's ~16 KiB/s: no
 * connection is kept open longer for a trickle the edge has refused.
 */
const PROGRESS_BYTES = 8 * 1024;
const REARM_EVERY_MS = 1000;

export interface BodyReader {
  /** Resolves with the whole body; rejects with AppError 413 / 503 as soon as a cap is crossed. */
  body: Promise<Buffer>;
  /** Bytes reserved in the budget for this body so far (release them with `budget.give`). */
  reserved(): number;
  /** Bytes of the body received so far (within its cap). */
  received(): number;
  /** True once the last chunk has arrived. */
  complete(): boolean;
  /** Called from `onAborted`: the body will never complete. */
  abort(): void;
  /**
   * The answer was decided without the body (a refusal waiting for it to finish arriving): from now
   * on its bytes are counted, not kept, and what it holds is given back to the budget. The body then
   * resolves empty.
   */
  discard(): void;
  /**
   * Resolves once the last chunk has arrived (then `complete()`), also after the body was refused
   * over the budget (its declared rest is counted, not kept), or when it never will (aborted, over
   * its cap, or refused over the budget without a declared length).
   */
  drained(): Promise<void>;
}

/**
 * Starts reading a body; must be called synchronously inside the route handler (uWS drops data
 * that arrives before `onData` is attached). The cap is enforced as bytes arrive, so a chunked body
 * without Content-Length cannot grow past it; each chunk is copied because uWS reuses its buffer.
 */
export function readBody(
  res: HttpResponse,
  maxBytes: number,
  budget: InflightBudget,
  declaredLength?: number,
  /** True once the request was answered (`res` must not be touched then). */
  answered: () => boolean = () => false,
): BodyReader {
  let reserved = 0;
  let size = 0;
  // Bytes kept since the idle timeout was last restarted (keepAlive), and when that was.
  let progress = 0;
  let rearmedAt = 0;
  let rearm = true;
  const keepAlive = (n: number) => {
    progress += n;
    if (progress < PROGRESS_BYTES || !rearm || answered()) return;
    const now = Date.now();
    if (now - rearmedAt < REARM_EVERY_MS) return;
    progress = 0;
    rearmedAt = now;
    try {
      // This uWS.js build's only way to restart the timeout: resume() sets it to 10 s again
      // (HttpResponse.h; pause() clears it). Both at once leave reading as it was.
      res.pause();
      res.resume();
    } catch {
      // uWS.js's Node fallback (no binary for this Node) has neither: its own timeouts apply.
      rearm = false;
    }
  };
  let complete = false;
  let failed = false;
  let abort = () => {};
  let discard = () => {};
  // Made only when a refusal waits for it (rare): not a promise per request on the hot path.
  let isDrained = false;
  let wake: (() => void) | undefined;
  const drain = () => {
    isDrained = true;
    wake?.();
  };
  const drained = () => (isDrained ? Promise.resolve() : new Promise<void>((r) => (wake = r)));
  const body = new Promise<Buffer>((resolve, reject) => {
    abort = () => {
      drain();
      // Called after every request (finish): only an unfinished body needs an error (and its stack).
      // The code is never seen: the client is gone, and route.ts does not count it as a rejection.
      if (complete || failed) return;
      failed = true;
      reject(new AppError('INVALID_PAYLOAD', 'request aborted'));
    };
    if (declaredLength !== undefined && declaredLength > maxBytes) {
      failed = true;
      drain();
      reject(new AppError('PAYLOAD_TOO_LARGE', `body is larger than ${maxBytes} bytes`));
    }
    const chunks: Buffer[] = [];
    // A large declared body is copied into one buffer of its size once 1 MiB of it has actually
    // arrived: gathered chunks were copied again by the final `Buffer.concat`, and for a 64 MiB body
    // that copy into fresh memory blocked the event loop for ~0.25 s in one piece (page faults, on
    // this VM). Only a body that sends that much gets the buffer (a declared length costs nothing),
    // and only while the budget has room for the rest; its bytes are reserved as they come either way.
    let whole: Buffer | undefined;
    let discarding = false;
    discard = () => {
      if (discarding) return;
      discarding = true;
      budget.give(reserved);
      reserved = 0;
      chunks.length = 0;
      whole = undefined;
    };
    res.onData((chunk, isLast) => {
      if (failed) return;
      size += chunk.byteLength;
      if (size > maxBytes) {
        failed = true;
        drain();
        return reject(new AppError('PAYLOAD_TOO_LARGE', `body is larger than ${maxBytes} bytes`));
      }
      if (discarding) {
        if (isLast) {
          complete = true;
          drain();
          resolve(Buffer.alloc(0));
        }
        return;
      }
      if (!budget.take(chunk.byteLength)) {
        // Refused; a declared body's rest is counted, not kept, so that its refusal can wait for it
        // (route.ts) and the client reads the 503 instead of being cut off mid-upload.
        reject(overBudget());
        if (declaredLength === undefined) {
          failed = true;
          return drain();
        }
        discard();
        if (isLast) {
          complete = true;
          drain();
        }
        return;
      }
      reserved += chunk.byteLength;
      if (!isLast) keepAlive(chunk.byteLength);
      if (whole && size > whole.length) {
        // More than declared (uWS frames bodies by Content-Length, so not expected): gather the rest.
        chunks.push(whole.subarray(0, size - chunk.byteLength));
        whole = undefined;
      }
      if (whole) whole.set(new Uint8Array(chunk), size - chunk.byteLength);
      // Copied into a Buffer (pooled when small): `chunk.slice(0)` made a separate ArrayBuffer per
      // chunk, each with its own backing store for the GC to track (≈ 2 µs against ≈ 1 µs a push).
      else if (chunk.byteLength > 0) chunks.push(Buffer.from(new Uint8Array(chunk)));
      if (
        !whole &&
        !isLast &&
        declaredLength !== undefined &&
        size >= PREALLOCATE_BYTES &&
        declaredLength > size &&
        budget.limit - budget.used >= declaredLength - size
      ) {
        whole = Buffer.allocUnsafeSlow(declaredLength);
        let at = 0;
        for (const c of chunks) at += c.copy(whole, at);
        chunks.length = 0;
      }
      if (isLast) {
        complete = true;
        drain();
        if (whole) resolve(size === whole.length ? whole : whole.subarray(0, size));
        else resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
      }
    });
  });
  body.catch(() => undefined);
  return {
    body,
    reserved: () => reserved,
    received: () => Math.min(size, maxBytes),
    complete: () => complete,
    abort: () => abort(),
    discard: () => discard(),
    drained,
  };
}
