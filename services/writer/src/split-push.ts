/**
 * Splits a push body into metric rows by slicing the raw JSON text (CONTRACT.md: each element of an
 * envelope's `metrics` array is one row; any other object is one "flat" row). Nothing is parsed into
 * JS numbers and re-serialised, so a 64-bit queryid reaches PostgreSQL's jsonb exactly as sent.
 *
 * The scanner is deliberately small: it trusts the edge's syntax check and only finds boundaries,
 * the `type` / `database` strings of each element and the item counts of its top-level arrays.
 * Full JSON validation happens in PostgreSQL (jsonb input) during COPY; a body that slips through
 * malformed fails there with SQLSTATE class 22 and is dead-lettered (see store-batch.ts).
 */

export interface MetricSlice {
  /** `type` of the element (`flat` for a flat push without a string `type`, `unknown` for a non-object element). */
  type: string;
  database: string | null;
  /** Character offsets of the element's text in the body: `body.slice(start, end)`. */
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
const STRUCTURAL = /["{}[\]]/g;

function isWs(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

function skipWs(s: string, i: number): number {
  while (i < s.length && isWs(s.charCodeAt(i))) i++;
  return i;
}

/** `i` at an opening quote → index just past the closing quote. */
function stringEnd(s: string, i: number): number {
  let j = i + 1;
  for (;;) {
    const q = s.indexOf('"', j);
    if (q < 0) throw new PushShapeError('unterminated string');
    // A quote preceded by an odd run of backslashes is escaped.
    let k = q - 1;
    while (k > i && s.charCodeAt(k) === BACKSLASH) k--;
    if ((q - 1 - k) % 2 === 0) return q + 1;
    j = q + 1;
  }
}

/**
 * Whether the string token at [start, end) decodes to `name`, without slicing it out in the common
 * case (most keys are not the ones looked for; only a key with an escape is decoded).
 */
function keyIs(s: string, start: number, end: number, name: string): boolean {
  if (end - start - 2 === name.length && s.startsWith(name, start + 1)) return true;
  const backslash = s.indexOf('\\', start + 1);
  return backslash >= 0 && backslash < end - 1 && decodeString(s, start, end) === name;
}

function decodeString(s: string, start: number, end: number): string {
  const raw = s.slice(start + 1, end - 1);
  return raw.includes('\\') ? (JSON.parse(s.slice(start, end)) as string) : raw;
}

/** Index just past the value starting at `i` (after whitespace). */
function valueEnd(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c === QUOTE) return stringEnd(s, i);
  if (c === OPEN_OBJ || c === OPEN_ARR) {
    // Jump from structural character to structural character: the regex engine skips the bytes in
    // between much faster than a charCodeAt loop (numbers, whitespace, punctuation need no look).
    // `test` (not `exec`): the match position is lastIndex - 1 (one character), and no match array
    // is allocated per structural character (that was ~10 KB of garbage per 2 KB push).
    let depth = 0;
    STRUCTURAL.lastIndex = i;
    for (;;) {
      if (!STRUCTURAL.test(s)) throw new PushShapeError('unterminated object or array');
      const j = STRUCTURAL.lastIndex - 1;
      const d = s.charCodeAt(j);
      if (d === QUOTE) {
        STRUCTURAL.lastIndex = stringEnd(s, j);
        continue;
      }
      if (d === OPEN_OBJ || d === OPEN_ARR) depth++;
      else if (--depth === 0) return j + 1;
    }
  }
  let j = i;
  while (j < s.length) {
    const d = s.charCodeAt(j);
    if (d === COMMA || d === CLOSE_OBJ || d === CLOSE_ARR || isWs(d)) break;
    j++;
  }
  if (j === i) throw new PushShapeError(`unexpected character at ${i}`);
  return j;
}

/** Counts the items of the array at `i` into `out.records`; returns the index just past it. */
function countArrayItems(s: string, i: number, out: { records: number }): number {
  let j = skipWs(s, i + 1);
  if (s.charCodeAt(j) === CLOSE_ARR) return j + 1;
  for (;;) {
    j = skipWs(s, valueEnd(s, skipWs(s, j)));
    out.records++;
    const c = s.charCodeAt(j);
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
function scanObject(s: string, i: number, wantMetrics: boolean): ObjectScan {
  const out: ObjectScan = { end: 0, type: null, database: null, records: 0, metrics: null };
  let arrays = 0;
  let j = skipWs(s, i + 1);
  if (s.charCodeAt(j) === CLOSE_OBJ) {
    out.end = j + 1;
    out.records = 1;
    return out;
  }
  for (;;) {
    if (s.charCodeAt(j) !== QUOTE) throw new PushShapeError(`expected a key at ${j}`);
    const keyStart = j;
    const keyEnd = stringEnd(s, j);
    j = skipWs(s, keyEnd);
    if (s.charCodeAt(j) !== COLON) throw new PushShapeError(`expected : at ${j}`);
    j = skipWs(s, j + 1);
    const c = s.charCodeAt(j);
    let end: number;
    if (wantMetrics && c === OPEN_ARR && keyIs(s, keyStart, keyEnd, 'metrics')) {
      [out.metrics, end] = sliceElements(s, j);
    } else if (c === OPEN_ARR) {
      end = countArrayItems(s, j, out);
      arrays++;
    } else {
      end = valueEnd(s, j);
      if (c === QUOTE) {
        if (keyIs(s, keyStart, keyEnd, 'type')) out.type = decodeString(s, j, end);
        else if (keyIs(s, keyStart, keyEnd, 'database')) out.database = decodeString(s, j, end);
      }
    }
    j = skipWs(s, end);
    const d = s.charCodeAt(j);
    if (d === CLOSE_OBJ) break;
    if (d !== COMMA) throw new PushShapeError(`expected , or } at ${j}`);
    j = skipWs(s, j + 1);
  }
  out.end = j + 1;
  if (arrays === 0) out.records = 1;
  return out;
}

function sliceElements(s: string, i: number): [MetricSlice[], number] {
  const slices: MetricSlice[] = [];
  let j = skipWs(s, i + 1);
  if (s.charCodeAt(j) === CLOSE_ARR) return [slices, j + 1];
  for (;;) {
    const start = j;
    if (s.charCodeAt(j) === OPEN_OBJ) {
      const o = scanObject(s, j, false);
      slices.push({ type: o.type ?? 'unknown', database: o.database, start, end: o.end, records: o.records });
      j = o.end;
    } else {
      j = valueEnd(s, j);
      slices.push({ type: 'unknown', database: null, start, end: j, records: 1 });
    }
    j = skipWs(s, j);
    const c = s.charCodeAt(j);
    if (c === CLOSE_ARR) return [slices, j + 1];
    if (c !== COMMA) throw new PushShapeError(`expected , or ] at ${j}`);
    j = skipWs(s, j + 1);
  }
}

/** Splits one push body; throws PushShapeError when the body is not a JSON object. */
export function splitPush(body: string): SplitPush {
  const i = skipWs(body, body.charCodeAt(0) === 0xfeff ? 1 : 0);
  if (body.charCodeAt(i) !== OPEN_OBJ) throw new PushShapeError('push body is not a JSON object');
  const top = scanObject(body, i, true);
  if (skipWs(body, top.end) !== body.length) throw new PushShapeError('trailing characters after the JSON object');
  if (top.metrics) return { kind: 'envelope', slices: top.metrics };
  return {
    kind: 'flat',
    slices: [{ type: top.type ?? 'flat', database: top.database, start: i, end: top.end, records: top.records }],
  };
}
