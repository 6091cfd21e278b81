import { createGunzip, gunzipSync } from 'node:zlib';
import { AppError } from '@pga/contracts';
import { overBudget, type InflightBudget } from '../http/read-body';

/**
 * Where inflated bytes are reserved: the in-flight budget, or a view of it that also counts the
 * collector's share (`refusal` then says which limit refused, 503 or 429).
 */
export type InflateBudget = Pick<InflightBudget, 'take' | 'give'> & { refusal?(): AppError };

/** Compressed bodies up to this size are inflated synchronously … */
const SYNC_INPUT_BYTES = 64 * 1024;
/** … into at most this much (≈ 1 ms of the event loop); larger outputs go to the thread pool. */
const SYNC_OUTPUT_BYTES = 2 * 1024 * 1024;

/**
 * Applies `Content-Encoding`. gzip is inflated with a cap on the output (a zip bomb is refused with
 * 413 as soon as the cap is crossed, never inflated into memory); a body labelled gzip that does
 * not start with the gzip magic bytes is taken as plain JSON (a known collector bug, CONTRACT.md).
 *
 * Small bodies (the usual push: a few KB) are inflated on the spot: the thread-pool round trip of
 * async zlib costs several times the inflate itself (≈ 60 µs against ≈ 15 µs for 2 KB). Anything
 * bigger, or inflating past SYNC_OUTPUT_BYTES, is done off the event loop, as a stream.
 *
 * With a `budget` (the push route), the inflated bytes are reserved in the in-flight budget — as
 * they come out, for the stream — and the caller gives `decoded.length` back when done with a
 * decoded body (nothing when the body came back as `raw`). Past the budget: 503, and the inflation
 * stops there. Without that, every concurrent large gzip push inflated up to MAX_BODY_BYTES (64 MiB)
 * before the budget saw any of it: the budget did not bound memory for gzip bodies.
 */
export function decodeBody(raw: Buffer, encoding: string, maxBytes: number, budget?: InflateBudget): Promise<Buffer> | Buffer {
  if (!isGzip(encoding) || raw.length < 2 || raw[0] !== 0x1f || raw[1] !== 0x8b) return raw;
  if (raw.length <= SYNC_INPUT_BYTES) {
    const cap = Math.min(maxBytes, SYNC_OUTPUT_BYTES);
    let out: Buffer | undefined;
    try {
      out = gunzipSync(raw, { maxOutputLength: cap });
    } catch (err) {
      if (!tooLarge(err)) throw new AppError('INVALID_PAYLOAD', 'body is not valid gzip');
      if (cap === maxBytes) throw new AppError('PAYLOAD_TOO_LARGE', `decompressed body is larger than ${maxBytes} bytes`);
    }
    if (out) {
      if (budget && !budget.take(out.length)) throw budget.refusal?.() ?? overBudget();
      return out;
    }
  }
  return inflateStream(raw, maxBytes, budget);
}

function inflateStream(raw: Buffer, maxBytes: number, budget?: InflateBudget): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const gunzip = createGunzip();
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: AppError) => {
      if (settled) return;
      settled = true;
      gunzip.destroy();
      budget?.give(size);
      reject(err);
    };
    gunzip.on('data', (chunk: Buffer) => {
      if (settled) return;
      if (size + chunk.length > maxBytes)
        return fail(new AppError('PAYLOAD_TOO_LARGE', `decompressed body is larger than ${maxBytes} bytes`));
      if (budget && !budget.take(chunk.length)) return fail(budget.refusal?.() ?? overBudget());
      size += chunk.length;
      chunks.push(chunk);
    });
    gunzip.on('error', () => fail(new AppError('INVALID_PAYLOAD', 'body is not valid gzip')));
    gunzip.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    gunzip.end(raw);
  });
}

const tooLarge = (err: unknown) => (err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE' || err instanceof RangeError;

export function isGzip(encoding: string): boolean {
  return encoding.trim().toLowerCase() === 'gzip' || encoding.trim().toLowerCase() === 'x-gzip';
}

/** `Content-Encoding` values the edge understands. */
export function checkEncoding(encoding: string): void {
  const e = encoding.trim().toLowerCase();
  if (e === '' || e === 'identity' || isGzip(e)) return;
  throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Encoding "${encoding}" is not supported (use gzip or none)`);
}

/** JSON only; a missing Content-Type is tolerated (some collectors omit it). */
export function checkJsonContentType(contentType: string): void {
  if (contentType === '') return;
  const type = contentType.split(';', 1)[0]!.trim().toLowerCase();
  if (type === 'application/json' || (type.startsWith('application/') && type.endsWith('+json'))) return;
  throw new AppError('UNSUPPORTED_MEDIA_TYPE', `Content-Type "${type}" is not supported (send application/json)`);
}
