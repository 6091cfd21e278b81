/**
 * Splits a push body into metric rows by slicing the raw JSON bytes (CONTRACT.md: each element of an
 * envelope's `metrics` array is one row; any other object is one "flat" row). An envelope's
 * `metrics` is an array of objects that each have a non-empty `type` string (the last `type` key
 * counts, as in jsonb); an object whose `metrics` is anything else is flat — the edge's scanner
 * (`scan-push-json.ts`) draws the same line, and its answer's `records` counts these rows. Nothing is parsed into
 * JS numbers and re-serialised, so a 64-bit queryid reaches PostgreSQL's jsonb exactly as sent.
 *
 * It works on the body's UTF-8 bytes, not on a decoded string: the writer holds every push of a batch
 * until COMMIT, and as Buffers they live outside the JS heap (as strings, every young-generation
 * collection copied them). JSON's structural characters are ASCII and never occur inside a UTF-8
 * multi-byte sequence, so a byte scan finds the same boundaries a character scan would.
 *
 * The scanner is deliberately small: it trusts the edge's syntax check and only finds boundaries,
 * the `type` / `database` strings of each element and the item counts of its top-level arrays.
 * Full JSON validation happens in PostgreSQL (jsonb input) during COPY; a body that slips through
 * malformed fails there with SQLSTATE class 22 and is dead-lettered (see store-batch.ts).
 */

export interface MetricSlice {
  /** `type` of the element (`flat` for a flat push without a string `type`). */
  type: string;
  database: string | null;
  /** Byte offsets of the element's JSON in the body: `body.subarray(start, end)`. */
  start: number;
  end: number;
  /** See README "record_count": items of the element's top-level arrays, or 1 when it has none. */
  records: number;
}

export interface SplitPush {
  kind: 'envelope' | 'flat';
  slices: MetricSlice[];
}

export class PushShapeError extends Error {
  override readonly name = 'PushShapeError';
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const OPEN_OBJ = 0x7b;
const CLOSE_OBJ = 0x7d;
const OPEN_ARR = 0x5b;
const CLOSE_ARR = 0x5d;
const COMMA = 0x2c;
const COLON = 0x3a;

function skipWs(b: Buffer, i: number): number {
  let c = b[i];
  while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
  return i;
}

/** `i` at an opening quote → index just past the closing quote. */
function stringEnd(b: Buffer, i: number): number {
  const n = b.length;
  for (let j = i + 1; j < n; j++) {
    const c = b[j];
    if (c === QUOTE) return j + 1;
    if (c === BACKSLASH) j++; // the escaped byte is never the closing quote
  }
  throw new PushShapeError('unterminated string');
}

/** Whether the string token at [start, end) decodes to the ASCII `name` (a key with an escape is decoded). */
function keyIs(b: Buffer, start: number, end: number, name: string): boolean {
  if (end - start - 2 === name.length) {
    let k = 0;
    while (k < name.length && b[start + 1 + k] === name.charCodeAt(k)) k++;
    if (k === name.length) return true;
  }
  return hasBackslash(b, start, end) && decodeString(b, start, end) === name;
}

function hasBackslash(b: Buffer, start: number, end: number): boolean {
  for (let k = start; k < end; k++) if (b[k] === BACKSLASH) return true;
  return false;
}

function decodeString(b: Buffer, start: number, end: number): string {
  return hasBackslash(b, start, end)
    ? (JSON.parse(b.toString('utf8', start, end)) as string)
    : b.toString('utf8', start + 1, end - 1);
}

/** Index just past the value starting at `i` (after whitespace). */
function valueEnd(b: Buffer, i: number): number {
  const c = b[i];
  if (c === QUOTE) return stringEnd(b, i);
  if (c === OPEN_OBJ || c === OPEN_ARR) {
    const n = b.length;
    let depth = 0;
    for (let j = i; j < n; j++) {
      const d = b[j]!;
      if (d === QUOTE) j = stringEnd(b, j) - 1;
      else if (d === OPEN_OBJ || d === OPEN_ARR) depth++;
      else if ((d === CLOSE_OBJ || d === CLOSE_ARR) && --depth === 0) return j + 1;
    }
    throw new PushShapeError('unterminated object or array');
  }
  let j = i;
  for (;;) {
    const d = b[j];
    if (
      d === undefined ||
      d === COMMA ||
      d === CLOSE_OBJ ||
      d === CLOSE_ARR ||
      d === 0x20 ||
      d === 0x0a ||
      d === 0x0d ||
      d === 0x09
    )
      break;
    j++;
  }
  if (j === i) throw new PushShapeError(`unexpected character at ${i}`);
  return j;
}

/** Counts the items of the array at `i` into `out.records`; returns the index just past it. */
function countArrayItems(b: Buffer, i: number, out: { records: number }): number {
  let j = skipWs(b, i + 1);
  if (b[j] === CLOSE_ARR) return j + 1;
  for (;;) {
    j = skipWs(b, valueEnd(b, skipWs(b, j)));
    out.records++;
    const c = b[j];
    if (c === CLOSE_ARR) return j + 1;
    if (c !== COMMA) throw new PushShapeError(`expected , or ] at ${j}`);
    j++;
  }
}

interface ObjectScan {
  end: number;
  type: string | null;
  database: string | null;
  records: number;
  metrics: MetricSlice[] | null;
}

/** Scans the object at `i`; with `wantMetrics`, slices the elements of its `metrics` array. */
function scanObject(b: Buffer, i: number, wantMetrics: boolean): ObjectScan {
  const out: ObjectScan = { end: 0, type: null, database: null, records: 0, metrics: null };
  let arrays = 0;
  let j = skipWs(b, i + 1);
  if (b[j] === CLOSE_OBJ) {
    out.end = j + 1;
    out.records = 1;
    return out;
  }
  for (;;) {
    if (b[j] !== QUOTE) throw new PushShapeError(`expected a key at ${j}`);
    const keyStart = j;
    const keyEnd = stringEnd(b, j);
    j = skipWs(b, keyEnd);
    if (b[j] !== COLON) throw new PushShapeError(`expected : at ${j}`);
    j = skipWs(b, j + 1);
    const c = b[j];
    let end = j;
    let slices: MetricSlice[] | null = null;
    const isMetrics = wantMetrics && keyIs(b, keyStart, keyEnd, 'metrics');
    if (isMetrics && c === OPEN_ARR) [slices, end] = sliceElements(b, j);
    if (isMetrics) out.metrics = slices; // the last `metrics` key counts
    if (!slices) {
      // Not the envelope's array: an ordinary value of this object.
      if (c === OPEN_ARR) {
        end = countArrayItems(b, j, out);
        arrays++;
      } else end = valueEnd(b, j);
      // The last occurrence of a key counts (jsonb keeps the last): a non-string one clears it.
      if (keyIs(b, keyStart, keyEnd, 'type')) out.type = c === QUOTE ? decodeString(b, j, end) : null;
      else if (keyIs(b, keyStart, keyEnd, 'database')) out.database = c === QUOTE ? decodeString(b, j, end) : null;
    }
    j = skipWs(b, end);
    const d = b[j];
    if (d === CLOSE_OBJ) break;
    if (d !== COMMA) throw new PushShapeError(`expected , or } at ${j}`);
    j = skipWs(b, j + 1);
  }
  out.end = j + 1;
  if (arrays === 0) out.records = 1;
  return out;
}

/**
 * The envelope's elements, or null when the array at `i` is not an envelope's (an element that is
 * not an object with a non-empty `type` string); the index just past the array either way.
 */
function sliceElements(b: Buffer, i: number): [MetricSlice[] | null, number] {
  const slices: MetricSlice[] = [];
  let envelope = true;
  let j = skipWs(b, i + 1);
  if (b[j] === CLOSE_ARR) return [slices, j + 1];
  for (;;) {
    const start = j;
    if (b[j] === OPEN_OBJ) {
      const o = scanObject(b, j, false);
      if (!o.type) envelope = false;
      else slices.push({ type: o.type, database: o.database, start, end: o.end, records: o.records });
      j = o.end;
    } else {
      j = valueEnd(b, j);
      envelope = false;
    }
    j = skipWs(b, j);
    const c = b[j];
    if (c === CLOSE_ARR) return [envelope ? slices : null, j + 1];
    if (c !== COMMA) throw new PushShapeError(`expected , or ] at ${j}`);
    j = skipWs(b, j + 1);
  }
}

/** Splits one push body (UTF-8 bytes); throws PushShapeError when the body is not a JSON object. */
export function splitPush(body: Buffer): SplitPush {
  const bom = body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf;
  const i = skipWs(body, bom ? 3 : 0);
  if (body[i] !== OPEN_OBJ) throw new PushShapeError('push body is not a JSON object');
  const top = scanObject(body, i, true);
  if (skipWs(body, top.end) !== body.length) throw new PushShapeError('trailing characters after the JSON object');
  if (top.metrics) return { kind: 'envelope', slices: top.metrics };
  return {
    kind: 'flat',
    slices: [{ type: top.type ?? 'flat', database: top.database, start: i, end: top.end, records: top.records }],
  };
}
