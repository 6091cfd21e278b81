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
  /** Bytes per chunk handed to the COPY stream (at least; one long value may make it longer); default 256 KiB. */
  chunkChars?: number;
}

/**
 * COPY text lines for the pushes, one per metric element, in chunks. metric_data is the element's
 * own text sliced from the body (split-push.ts), so numbers are never re-serialised. The text is
 * encoded straight into each chunk's Buffer (`buf.write`), not concatenated into one long string
 * first: that saved flattening and copying every byte twice, and the garbage of the big strings.
 */
export async function* copyRows(pushes: PreparedPush[], options: CopyRowsOptions): AsyncGenerator<Buffer> {
  const chunkBytes = options.chunkChars ?? 256 * 1024;
  const tail = `\tt\t${options.processedAtIso}\n`;
  let buf = Buffer.allocUnsafe(chunkBytes);
  let used = 0;
  /** Appends `text` (UTF-8); hands back the full chunk, if this text did not fit after it. */
  const put = (text: string): Buffer | null => {
    // UTF-8 needs at most 3 bytes per UTF-16 code unit.
    if (used + text.length * 3 <= buf.length) {
      used += buf.write(text, used);
      return null;
    }
    const full = buf.subarray(0, used);
    const need = Buffer.byteLength(text);
    buf = Buffer.allocUnsafe(Math.max(chunkBytes, need));
    used = buf.write(text, 0);
    return full.length > 0 ? full : null;
  };
  let rows = 0;
  for (const p of pushes) {
    const head = `${p.collectorId}\t${p.pushId}\t`;
    const mid = `\t${p.receivedIso}\t`;
    for (const s of p.split.slices) {
      const db = s.database === null ? '\\N' : copyEscape(s.database.slice(0, 255));
      const a = put(`${head}${copyEscape(s.type.slice(0, 100))}\t${db}\t`);
      const b = put(copyEscape(p.text.slice(s.start, s.end)));
      const c = put(`${mid}${s.records}\t${p.checksum}${tail}`);
      if (a) yield a;
      if (b) yield b;
      if (c) yield c;
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
