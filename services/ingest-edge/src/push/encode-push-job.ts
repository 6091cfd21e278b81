import type { PushSubmission } from './push-packer';

/**
 * How each byte is written inside a JSON string (as JSON.stringify does): 0 = as is; a character =
 * backslash + that character (`\"`, `\\`, `\n`, …); 255 = `\u00XX`.
 */
const ESCAPE = new Uint8Array(256);
for (let b = 0; b < 0x20; b++) ESCAPE[b] = 255;
for (const [b, c] of [
  [0x22, '"'],
  [0x5c, '\\'],
  [0x08, 'b'],
  [0x09, 't'],
  [0x0a, 'n'],
  [0x0c, 'f'],
  [0x0d, 'r'],
] as const)
  ESCAPE[b] = c.charCodeAt(0);
const HEX = Buffer.from('0123456789abcdef', 'latin1');

/** The job's own fields are ids, hex and ISO times; anything else is escaped by JSON.stringify. */
const PLAIN = /^[\w:.+-]*$/;
const field = (s: string): string => (PLAIN.test(s) ? `"${s}"` : JSON.stringify(s));

let scratch = Buffer.allocUnsafeSlow(256 * 1024);
/** A scratch buffer grown for one huge job is not kept. */
const KEEP_SCRATCH_BYTES = 4 * 1024 * 1024;

/**
 * The packed job `{"v":1,"pushes":[…]}` (PushJobSchema) as UTF-8 bytes, written straight from the
 * received body bytes: the same JSON that `JSON.stringify` of the job with each body as a string
 * gives (bodies are valid UTF-8, checked before packing), without the three heap copies of every
 * body that took — the body as a string, the job's JSON text, and that text encoded again.
 */
export function encodePushJob(pushes: readonly PushSubmission[]): Buffer {
  let out = scratch;
  let pos = out.write('{"v":1,"pushes":[', 0, 'latin1');
  for (let i = 0; i < pushes.length; i++) {
    const p = pushes[i]!;
    const head =
      `${i ? ',' : ''}{"push_id":${field(p.push_id)},"collector_id":${field(p.collector_id)},` +
      `"received_at":${field(p.received_at)},"checksum":${field(p.checksum)},"body":"`;
    const body = p.body;
    const n = body.length;
    // Worst case every byte becomes \u00XX; then `"}` and the closing `]}`.
    const need = pos + Buffer.byteLength(head) + n * 6 + 4;
    if (need > out.length) {
      const grown = Buffer.allocUnsafeSlow(Math.max(out.length * 2, need));
      out.copy(grown, 0, 0, pos);
      out = grown;
    }
    pos += out.write(head, pos);
    // Byte by byte in local variables: a JSON body has a quote every few bytes, so copying the runs
    // between escapes with Buffer#copy costs more (and allocates a view per call).
    for (let j = 0; j < n; j++) {
      const byte = body[j]!;
      const escape = ESCAPE[byte]!;
      if (escape === 0) out[pos++] = byte;
      else if (escape !== 255) {
        out[pos++] = 0x5c;
        out[pos++] = escape;
      } else {
        out[pos++] = 0x5c;
        out[pos++] = 0x75; // u
        out[pos++] = 0x30;
        out[pos++] = 0x30;
        out[pos++] = HEX[byte >> 4]!;
        out[pos++] = HEX[byte & 15]!;
      }
    }
    out[pos++] = 0x22; // "
    out[pos++] = 0x7d; // }
  }
  if (pos + 2 > out.length) {
    const grown = Buffer.allocUnsafeSlow(pos + 2);
    out.copy(grown, 0, 0, pos);
    out = grown;
  }
  out[pos++] = 0x5d; // ]
  out[pos++] = 0x7d; // }
  const job = Buffer.allocUnsafeSlow(pos);
  out.copy(job, 0, 0, pos);
  if (out.length <= KEEP_SCRATCH_BYTES) scratch = out;
  return job;
}
