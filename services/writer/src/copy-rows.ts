import type { PreparedPush } from './prepare-push';

const NEEDS_ESCAPE = /[\\\n\r\t]/;
const ESCAPES = /[\\\n\r\t]/g;
const ESCAPED: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

/** COPY text-format escaping (backslash, newline, carriage return, tab); most values need none. */
export function copyEscape(value: string): string {
  return NEEDS_ESCAPE.test(value) ? value.replace(ESCAPES, (c) => ESCAPED[c]!) : value;
}

export interface CopyRowsOptions {
  processedAtIso: string;
  /** Yield once after this many rows (test hook: a deterministic "mid-COPY" point); default never. */
  pauseAfterRows?: number;
  onPause?: () => Promise<void>;
  /** Bytes per chunk handed to the COPY stream (at least; one long row may make it longer); default 256 KiB. */
  chunkChars?: number;
}

/**
 * COPY text lines for the pushes, one per metric element, in chunks. metric_data is the element's
 * own bytes sliced from the body (split-push.ts), so numbers are never re-serialised. Each slice
 * goes through a short-lived latin1 string (one character per byte, no UTF-8 decoding or encoding):
 * V8's regex finds the four bytes COPY needs escaped (no byte of a UTF-8 multi-byte sequence is one
 * of them) and `write(…, 'latin1')` copies the bytes back. Measured on the bench's 2 KB pushes:
 * 3.3 µs per push, against 8 µs for a JavaScript byte loop on this machine.
 */
export async function* copyRows(pushes: PreparedPush[], options: CopyRowsOptions): AsyncGenerator<Buffer> {
  const chunkBytes = options.chunkChars ?? 256 * 1024;
  const tail = `\tt\t${options.processedAtIso}\n`;
  let buf = Buffer.allocUnsafe(chunkBytes);
  let used = 0;
  let rows = 0;
  for (const p of pushes) {
    const head = `${p.collectorId}\t${p.pushId}\t`;
    const end = `\t${p.receivedIso}\t`;
    for (const s of p.split.slices) {
      const db = s.database === null ? '\\N' : copyEscape(s.database.slice(0, 255));
      const before = `${head}${copyEscape(s.type.slice(0, 100))}\t${db}\t`;
      const after = `${end}${s.records}\t${p.checksum}${tail}`;
      // UTF-8 needs at most 3 bytes per UTF-16 code unit; an escaped byte takes 2.
      const bound = (before.length + after.length) * 3 + (s.end - s.start) * 2;
      if (used + bound > buf.length) {
        if (used > 0) yield buf.subarray(0, used);
        buf = Buffer.allocUnsafe(Math.max(chunkBytes, bound));
        used = 0;
      }
      used += buf.write(before, used);
      used += buf.write(copyEscape(p.body.toString('latin1', s.start, s.end)), used, 'latin1');
      used += buf.write(after, used);
      rows++;
      if (rows === options.pauseAfterRows && options.onPause) {
        if (used > 0) yield buf.subarray(0, used);
        buf = Buffer.allocUnsafe(chunkBytes);
        used = 0;
        await options.onPause();
      }
    }
  }
  if (used > 0) yield buf.subarray(0, used);
}
