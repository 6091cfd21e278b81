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
  /** Bytes per chunk handed to the COPY stream; default 256 KiB. */
  chunkChars?: number;
}

/**
 * COPY text lines for the pushes, one per metric element, in chunks. metric_data is the element's
 * own text sliced from the body (split-push.ts), so numbers are never re-serialised.
 */
export async function* copyRows(pushes: PreparedPush[], options: CopyRowsOptions): AsyncGenerator<Buffer> {
  const chunkChars = options.chunkChars ?? 256 * 1024;
  const tail = `\tt\t${options.processedAtIso}\n`;
  let chunk = '';
  let rows = 0;
  for (const p of pushes) {
    const head = `${p.collectorId}\t${p.pushId}\t`;
    const mid = `\t${p.receivedIso}\t`;
    const checksum = p.checksum;
    for (const s of p.split.slices) {
      const db = s.database === null ? '\\N' : copyEscape(s.database.slice(0, 255));
      chunk += `${head}${copyEscape(s.type.slice(0, 100))}\t${db}\t${copyEscape(p.text.slice(s.start, s.end))}${mid}${s.records}\t${checksum}${tail}`;
      rows++;
      if (chunk.length >= chunkChars) {
        yield Buffer.from(chunk, 'utf8');
        chunk = '';
      }
      if (rows === options.pauseAfterRows && options.onPause) {
        if (chunk) yield Buffer.from(chunk, 'utf8');
        chunk = '';
        await options.onPause();
      }
    }
  }
  if (chunk) yield Buffer.from(chunk, 'utf8');
}
