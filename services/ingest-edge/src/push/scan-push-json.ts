import { AppError } from '@pga/contracts';

/** What the edge needs from a push body; everything else stays as the bytes received. */
export interface PushScan {
  /** Top-level `collector_id` (a string: any other type but null is refused). */
  collectorId?: string;
  /** Top-level `push_id` when it is a string. */
  pushId?: string;
  /**
   * Elements of the envelope's `metrics` array (CONTRACT.md: an array of objects, each with a
   * `type` string); undefined for a flat push — any other object, including one whose `metrics` is
   * not such an array (it is stored whole, as one row, like every flat push).
   */
  metricsCount?: number;
}

// PostgreSQL's own parser gives up far deeper, but nothing a collector sends nests this deep.
const MAX_DEPTH = 256;

/**
 * What one jsonb value can hold (PostgreSQL 15, measured with `::jsonb` and in a COPY): at most
 * 268,435,455 bytes (JENTRY_OFFLENMASK), an array of at most 2^24 elements and an object of at most
 * 2^23 keys (one more asks palloc for 1 GiB or more of parse nodes: "invalid memory alloc request
 * size"). Each row the writer stores (a metric element, or a flat push whole) must fit.
 */
const JSONB_MAX_BYTES = 268_435_455;
const JSONB_MAX_ARRAY_ELEMENTS = 16_777_216;
const JSONB_MAX_OBJECT_KEYS = 8_388_608;
/**
 * A row of at most this much JSON text fits whatever it holds: jsonb takes at most ~6 bytes per byte
 * of text (`1,` → 12 bytes), an array element at least 2 bytes of text, a key and its value at least
 * 5. Only longer rows (possible when MAX_BODY_BYTES is over 32 MiB: the default is 64) are measured
 * by `jsonbProblem`.
 */
const JSONB_SAFE_ROW_BYTES = 32 * 1024 * 1024;

const enum C {
  QUOTE = 0x22,
  BACKSLASH = 0x5c,
  COMMA = 0x2c,
  COLON = 0x3a,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  MINUS = 0x2d,
}

const invalid = (message: string) => new AppError('INVALID_JSON', message);
const badPayload = (message: string) => new AppError('INVALID_PAYLOAD', message);

/**
 * Validates a push body and picks out the few top-level fields the edge routes on. The body is never
 * re-serialised, so 64-bit integers reach PostgreSQL exactly as sent (CONTRACT.md). Refuses what
 * PostgreSQL's jsonb would refuse later in a COPY batch (a `\u0000` escape, an unpaired surrogate
 * escape, absurd nesting), so one bad push cannot poison the writer's batch. UTF-8 validity is
 * checked separately (`isUtf8`).
 *
 * Two passes with one outcome. `quickScan` is a flat loop that allocates nothing (JSON.parse would
 * build the whole tree: measured in the edge, its garbage cost more than the parse) and accepts the
 * ordinary push; whenever it is unsure — any error, a `\u` escape, an escaped or non-ASCII key or
 * `type` — the exact `scanBytes` decides and words the error.
 */
export function scanPushJson(b: Uint8Array): PushScan {
  return quickScan(b) ?? scanBytes(b);
}

const enum Ctx {
  OBJECT = 1,
  ARRAY = 2,
}
const stack = new Uint8Array(MAX_DEPTH + 2);
const KEY_COLLECTOR_ID = 1;
const KEY_PUSH_ID = 2;
const KEY_METRICS = 3;
const KEY_TYPE = 4;

/** Which routed key `b[start, end)` (an unescaped key's bytes) is; 0 for any other. */
function keyId(b: Uint8Array, start: number, end: number, depth: number): number {
  const len = end - start;
  if (depth === 1) {
    if (len === 12 && b[start] === 0x63 && asciiEquals(b, start, 'collector_id')) return KEY_COLLECTOR_ID;
    if (len === 7 && b[start] === 0x70 && asciiEquals(b, start, 'push_id')) return KEY_PUSH_ID;
    if (len === 7 && b[start] === 0x6d && asciiEquals(b, start, 'metrics')) return KEY_METRICS;
  } else if (len === 4 && b[start] === 0x74 && asciiEquals(b, start, 'type')) return KEY_TYPE;
  return 0;
}

function asciiEquals(b: Uint8Array, at: number, word: string): boolean {
  for (let k = 0; k < word.length; k++) if (b[at + k] !== word.charCodeAt(k)) return false;
  return true;
}

/**
 * Skips a string whose opening quote is at `i`; returns the index after the closing quote, or
 * -1 (not simple: invalid, or a `\u` escape the exact scanner must judge). Sets `lastEscaped` and
 * `lastAscii` for the caller's key/type checks.
 */
let lastEscaped = false;
let lastAscii = true;
function skipString(b: Uint8Array, i: number): number {
  const n = b.length;
  let escaped = false;
  let ascii = true;
  for (i++; i < n; i++) {
    const c = b[i]!;
    if (c === C.QUOTE) {
      lastEscaped = escaped;
      lastAscii = ascii;
      return i + 1;
    }
    if (c === C.BACKSLASH) {
      const e = b[i + 1];
      if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
        escaped = true;
        i++;
        continue;
      }
      return -1;
    }
    if (c < 0x20) return -1;
    if (c >= 0x80) ascii = false;
  }
  return -1;
}

/**
 * Skips a number; -1 when invalid, or when it is long (over 1,000 characters) or has an exponent of
 * over 3 digits: only then can it be out of jsonb's numeric range, which the exact pass judges.
 */
function skipNumber(b: Uint8Array, i: number): number {
  const start = i;
  if (b[i] === C.MINUS) i++;
  if (b[i] === 0x30) i++;
  else if (isDigit(b[i])) while (isDigit(b[i])) i++;
  else return -1;
  if (b[i] === 0x2e) {
    i++;
    if (!isDigit(b[i])) return -1;
    while (isDigit(b[i])) i++;
  }
  if (b[i] === 0x65 || b[i] === 0x45) {
    i++;
    if (b[i] === 0x2b || b[i] === C.MINUS) i++;
    const digits = i;
    if (!isDigit(b[i])) return -1;
    while (isDigit(b[i])) i++;
    if (i - digits > 3) return -1;
  }
  return i - start > 1000 ? -1 : i;
}

/** PostgreSQL numeric (what jsonb stores a number as): at most this many digits before the point… */
const NUMERIC_MAX_INT_DIGITS = 131072;
/** …and this many after it, as written (a number's display scale). */
const NUMERIC_MAX_SCALE = 16383;
/** An exponent this large either way is refused whatever the digits (PostgreSQL 15: INT_MAX / 2). */
const NUMERIC_MAX_EXPONENT = 1073741823;

/**
 * Whether jsonb can store the number `b[start, end)` (valid JSON): numeric overflows past 131,072
 * integer digits or a display scale over 16,383 (`1e131072`, `1e-16384`, `0e-99999` are SQLSTATE
 * 22003 in a COPY, measured on PostgreSQL 15), and such a push would be acknowledged and then
 * dead-lettered by the writer.
 */
function fitsNumeric(b: Uint8Array, start: number, end: number): boolean {
  let i = b[start] === C.MINUS ? start + 1 : start;
  const intStart = i;
  while (isDigit(b[i])) i++;
  const intDigits = i - intStart;
  let fracDigits = 0;
  let fracLeadingZeros = 0;
  let nonZero = b[intStart] !== 0x30;
  if (b[i] === 0x2e) {
    const fracStart = ++i;
    while (isDigit(b[i])) i++;
    fracDigits = i - fracStart;
    while (fracLeadingZeros < fracDigits && b[fracStart + fracLeadingZeros] === 0x30) fracLeadingZeros++;
    nonZero ||= fracLeadingZeros < fracDigits;
  }
  let exp = 0;
  if (i < end) {
    i++; // e / E
    const negative = b[i] === C.MINUS;
    if (negative || b[i] === 0x2b) i++;
    // Past 10 digits only "huge" matters: capped, so the arithmetic below stays exact.
    for (; i < end; i++) exp = Math.min(exp * 10 + (b[i]! - 0x30), 1e10);
    if (negative) exp = -exp;
  }
  // numeric_in refuses such an exponent before it looks at the digits, even for a zero (0e1073741823).
  if (Math.abs(exp) >= NUMERIC_MAX_EXPONENT) return false;
  if (Math.max(0, fracDigits - exp) > NUMERIC_MAX_SCALE) return false;
  if (!nonZero) return true;
  const wholeDigits = (b[intStart] !== 0x30 ? intDigits : -fracLeadingZeros) + exp;
  return wholeDigits <= NUMERIC_MAX_INT_DIGITS;
}

function skipWs(b: Uint8Array, i: number): number {
  let c = b[i];
  while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++i];
  return i;
}

/** The fast pass: the scan of an ordinary valid push, or undefined when `scanBytes` must decide. */
function quickScan(b: Uint8Array): PushScan | undefined {
  const n = b.length;
  let i = skipWs(b, 0);
  if (b[i] !== C.LBRACE) return undefined;
  const scan: PushScan = {};
  let depth = 1;
  stack[1] = Ctx.OBJECT;
  i++;
  /** Depth of the metrics array being counted (0 = none), its element count, and the current element's type check. */
  let metricsDepth = 0;
  let metricsCount = 0;
  let typeOk = false;
  /** Where the metric element being read began: one over JSONB_SAFE_ROW_BYTES is for the exact pass to measure. */
  let elementStart = 0;
  // After `{` or `,` in an object: a key; after `[` or `,` in an array: a value.
  let first = true;
  for (;;) {
    i = skipWs(b, i);
    const ctx = stack[depth];
    if (first && (b[i] === C.RBRACE || b[i] === C.RBRACKET)) {
      // Empty container: closes below like a full one (no value was read).
      if ((ctx === Ctx.OBJECT) !== (b[i] === C.RBRACE)) return undefined;
    } else {
      /** Routed key whose value comes next (0 = none). */
      let key = 0;
      if (ctx === Ctx.OBJECT) {
        if (b[i] !== C.QUOTE) return undefined;
        const start = i + 1;
        i = skipString(b, i);
        if (i < 0) return undefined;
        if (depth === 1 || depth === metricsDepth + 1) {
          if (lastEscaped) return undefined;
          key = keyId(b, start, i - 1, depth);
        }
        i = skipWs(b, i);
        if (b[i] !== C.COLON) return undefined;
        i = skipWs(b, i + 1);
      }
      // A value.
      const c = b[i];
      if (ctx === Ctx.ARRAY && depth === metricsDepth) {
        if (c !== C.LBRACE) return undefined;
        typeOk = false;
        elementStart = i;
      }
      if (c === C.LBRACE || c === C.LBRACKET) {
        if (depth >= MAX_DEPTH - 2) return undefined;
        if (depth === 1 && key === KEY_METRICS) {
          if (c !== C.LBRACKET) scan.metricsCount = undefined;
          else {
            metricsDepth = 2;
            metricsCount = 0;
          }
        } else if ((depth === 1 && (key === KEY_COLLECTOR_ID || key === KEY_PUSH_ID)) || key === KEY_TYPE) return undefined;
        stack[++depth] = c === C.LBRACE ? Ctx.OBJECT : Ctx.ARRAY;
        i++;
        first = true;
        continue;
      }
      const start = i;
      if (c === C.QUOTE) i = skipString(b, i);
      else if (c === 0x74) i = asciiEquals(b, i, 'true') ? i + 4 : -1;
      else if (c === 0x66) i = asciiEquals(b, i, 'false') ? i + 5 : -1;
      else if (c === 0x6e) i = asciiEquals(b, i, 'null') ? i + 4 : -1;
      else i = skipNumber(b, i);
      if (i < 0) return undefined;
      if (depth === 1 && key !== 0) {
        if (key === KEY_METRICS) scan.metricsCount = undefined;
        else {
          if (c !== C.QUOTE || lastEscaped || !lastAscii) return undefined;
          const text = Buffer.from(b.buffer, b.byteOffset + start + 1, i - start - 2).toString('latin1');
          if (key === KEY_COLLECTOR_ID) scan.collectorId = text;
          else if (text.length < 1 || text.length > 128)
            return undefined; // the exact pass words the error
          else scan.pushId = text;
        }
      } else if (key === KEY_TYPE && depth === metricsDepth + 1) {
        if (c !== C.QUOTE || lastEscaped || !lastAscii) return undefined;
        typeOk = i - start - 2 >= 1;
      }
      i = skipWs(b, i);
    }
    // After a value (or an empty container's opening): `,` or the close of this container.
    first = false;
    let c = b[i];
    while (c === C.RBRACE || c === C.RBRACKET) {
      if ((stack[depth] === Ctx.OBJECT) !== (c === C.RBRACE)) return undefined;
      if (metricsDepth > 0) {
        if (depth === metricsDepth + 1) {
          if (!typeOk || i - elementStart >= JSONB_SAFE_ROW_BYTES) return undefined;
          metricsCount++;
        } else if (depth === metricsDepth) {
          scan.metricsCount = metricsCount;
          metricsDepth = 0;
        }
      }
      depth--;
      i = skipWs(b, i + 1);
      // A flat push is one row: the whole body.
      if (depth === 0) return i === n && (scan.metricsCount !== undefined || n <= JSONB_SAFE_ROW_BYTES) ? scan : undefined;
      c = b[i];
    }
    if (c !== C.COMMA) return undefined;
    i++;
  }
}

/** The byte scanner: one pass that validates JSON syntax (RFC 8259) without building it. */
export function scanBytes(b: Uint8Array): PushScan {
  const s = new Scanner(b);
  s.ws();
  if (b[s.i] !== C.LBRACE) {
    if (s.i >= b.length) throw invalid('body is empty');
    // Still reject broken JSON as INVALID_JSON before calling it the wrong shape.
    s.value(0);
    s.ws();
    if (s.i !== b.length) throw invalid(`unexpected data at byte ${s.i}`);
    throw badPayload('body must be a JSON object');
  }
  const scan = s.topObject();
  s.ws();
  if (s.i !== b.length) throw invalid(`unexpected data at byte ${s.i}`);
  // Each row must fit in one jsonb value: every metric element, or a flat push whole.
  if (scan.metricsCount !== undefined) {
    for (const [start, end, index] of s.longElements) {
      const problem = jsonbProblem(b, start, end);
      if (problem) throw badPayload(`metrics[${index}] (${mib(end - start)}) cannot be stored: ${problem}; split it`);
    }
  } else if (b.length > JSONB_SAFE_ROW_BYTES) {
    const problem = jsonbProblem(b, 0, b.length);
    if (problem) throw badPayload(`this push (${mib(b.length)}, stored whole as one row) cannot be stored: ${problem}; split it`);
  }
  return scan;
}

const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB of JSON`;

/**
 * Why the valid JSON value `b[start, end)` would not fit in one PostgreSQL jsonb value, or undefined.
 * Its jsonb size is estimated from above: 4 bytes per entry (JEntry), a string's bytes as written,
 * a number's header, digits and alignment, a container's header and alignment (exact for strings; a
 * row near the limit may be refused though PostgreSQL would just take it: `[1,1,…]` is 12 bytes per
 * element in jsonb, estimated 15 — the alignment a `1` needs after a string of odd length —, so a
 * row of mostly small numbers is refused from about 80 % of the limit).
 */
export function jsonbProblem(b: Uint8Array, start: number, end: number): string | undefined {
  /** Per open container: 1 = object, 2 = array; and its entries so far (commas + 1, once not empty). */
  const kinds: number[] = [];
  const entries: number[] = [];
  let size = 8; // varlena header, root container header
  let i = start;
  const close = () => {
    const kind = kinds.pop()!;
    const n = entries.pop()!;
    if (kind === 2 && n > JSONB_MAX_ARRAY_ELEMENTS)
      return `an array of ${n.toLocaleString('en-US')} elements (jsonb holds at most ${JSONB_MAX_ARRAY_ELEMENTS.toLocaleString('en-US')})`;
    if (kind === 1 && n > JSONB_MAX_OBJECT_KEYS)
      return `an object of ${n.toLocaleString('en-US')} keys (jsonb holds at most ${JSONB_MAX_OBJECT_KEYS.toLocaleString('en-US')})`;
    return undefined;
  };
  /** A value (or key) begins in the innermost container: the first one makes it non-empty. */
  const begin = () => {
    const top = entries.length - 1;
    if (top >= 0 && entries[top] === 0) entries[top] = 1;
  };
  while (i < end) {
    const c = b[i]!;
    if (c === C.QUOTE) {
      begin();
      let j = i + 1;
      while (b[j] !== C.QUOTE) j += b[j] === C.BACKSLASH ? 2 : 1;
      size += 4 + (j - i - 1);
      i = j + 1;
    } else if (c === C.LBRACE || c === C.LBRACKET) {
      begin();
      kinds.push(c === C.LBRACE ? 1 : 2);
      entries.push(0);
      size += 11;
      i++;
    } else if (c === C.RBRACE || c === C.RBRACKET) {
      const problem = close();
      if (problem) return problem;
      i++;
    } else if (c === C.COMMA) {
      entries[entries.length - 1]!++;
      i++;
    } else if (c === C.MINUS || isDigit(c)) {
      begin();
      const from = i;
      let exponent = false;
      for (; i < end; i++) {
        const d = b[i];
        if (d === 0x65 || d === 0x45) exponent = true;
        else if (!(isDigit(d) || d === 0x2e || d === 0x2b || d === C.MINUS)) break;
      }
      // JEntry 4, alignment ≤ 3 (a numeric starts on 4 bytes: after a string of odd length, say),
      // numeric's header — 6 bytes (jsonb keeps its 4-byte varlena header), 8 in numeric's long
      // format (a scale over 63 or a weight beyond ±63: possible only with an exponent or over 60
      // characters) — and its base-10000 digits: L characters hold at most ceil((L + 3) / 4) of them.
      size += (exponent || i - from > 60 ? 15 : 13) + 2 * Math.ceil((i - from + 3) / 4);
    } else if (c === 0x74 || c === 0x6e || c === 0x66) {
      begin();
      size += 4;
      i += c === 0x66 ? 5 : 4;
    } else i++; // whitespace, ':'
  }
  if (size > JSONB_MAX_BYTES)
    return `it would take about ${Math.round(size / 1e6)} MB as jsonb, over the ${JSONB_MAX_BYTES.toLocaleString('en-US')} bytes one jsonb value holds`;
  return undefined;
}

class Scanner {
  i = 0;
  /** Metric elements over JSONB_SAFE_ROW_BYTES: [start, end, index], for `jsonbProblem`. */
  readonly longElements: [number, number, number][] = [];
  constructor(readonly b: Uint8Array) {}

  ws(): void {
    const b = this.b;
    let c = b[this.i];
    while (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) c = b[++this.i];
  }

  expect(ch: number, what: string): void {
    this.ws();
    if (this.b[this.i] !== ch) throw invalid(`expected ${what} at byte ${this.i}`);
    this.i++;
  }

  topObject(): PushScan {
    const scan: PushScan = {};
    this.i++; // {
    this.ws();
    if (this.b[this.i] === C.RBRACE) {
      this.i++;
      return scan;
    }
    for (;;) {
      const key = this.keyText();
      this.expect(C.COLON, '":"');
      this.ws();
      const start = this.i;
      if (key === 'metrics' && this.b[this.i] === C.LBRACKET) {
        scan.metricsCount = this.metricsArray();
        if (scan.metricsCount === undefined) delete scan.metricsCount;
      } else {
        if (key === 'metrics') scan.metricsCount = undefined;
        const first = this.b[this.i];
        this.value(1);
        if (key === 'collector_id') {
          // A string is the collector's id (matched against the token: else 403). Another type is a
          // malformed body (400, as for push_id), not someone else's push; null is absent (as for
          // push_id): a collector that has no id to report yet.
          if (first === C.QUOTE) scan.collectorId = this.text(start, this.i);
          else if (first === 0x6e) delete scan.collectorId;
          else throw badPayload('collector_id must be a string (the collector id)');
        } else if (key === 'push_id') {
          if (first === C.QUOTE) {
            const text = this.text(start, this.i);
            // It names the push for 24 h (CONTRACT.md): an empty one would make every later push of
            // the collector a "duplicate" of the first, silently not stored.
            if (text.length < 1 || text.length > 128) throw badPayload('push_id must be 1-128 characters');
            scan.pushId = text;
          } else if (first === C.MINUS || isDigit(first)) {
            // A numeric id (a counter) is named by its JSON text: 17 and "17" are the same push (17.0
            // is another: nothing is parsed).
            scan.pushId = this.raw(start, this.i);
            if (scan.pushId.length > 128) throw badPayload('push_id must be 1-128 characters');
          } else if (first !== 0x6e) {
            throw badPayload('push_id must be a string or a number');
          } else delete scan.pushId; // null: as if absent
        }
      }
      this.ws();
      const c = this.b[this.i++];
      if (c === C.RBRACE) return scan;
      if (c !== C.COMMA) throw invalid(`expected "," or "}" at byte ${this.i - 1}`);
    }
  }

  /**
   * A top-level `metrics` array: its element count when every element is an object with a non-empty
   * `type` string (the envelope), else undefined (a flat push). Validated either way.
   */
  metricsArray(): number | undefined {
    this.i++; // [
    this.ws();
    let n = 0;
    let envelope = true;
    if (this.b[this.i] === C.RBRACKET) {
      this.i++;
      return 0;
    }
    for (;;) {
      this.ws();
      if (this.b[this.i] === C.LBRACE) {
        const start = this.i;
        envelope = this.metricElement() && envelope;
        if (this.i - start > JSONB_SAFE_ROW_BYTES) this.longElements.push([start, this.i, n]);
      } else {
        this.value(3);
        envelope = false;
      }
      n++;
      this.ws();
      const c = this.b[this.i++];
      if (c === C.RBRACKET) return envelope ? n : undefined;
      if (c !== C.COMMA) throw invalid(`expected "," or "]" at byte ${this.i - 1}`);
    }
  }

  metricElement(): boolean {
    this.i++; // {
    this.ws();
    let typeOk = false;
    if (this.b[this.i] === C.RBRACE) {
      this.i++;
      return false;
    }
    for (;;) {
      const key = this.keyText();
      this.expect(C.COLON, '":"');
      this.ws();
      const start = this.i;
      const isString = this.b[this.i] === C.QUOTE;
      this.value(3);
      if (key === 'type') typeOk = isString && this.text(start, this.i).length >= 1;
      this.ws();
      const c = this.b[this.i++];
      if (c === C.RBRACE) return typeOk;
      if (c !== C.COMMA) throw invalid(`expected "," or "}" at byte ${this.i - 1}`);
    }
  }

  /** Reads an object key and returns it decoded. */
  keyText(): string {
    this.ws();
    const start = this.i;
    if (this.b[this.i] !== C.QUOTE) throw invalid(`expected a string key at byte ${this.i}`);
    const escaped = this.string();
    return escaped
      ? this.text(start, this.i)
      : Buffer.from(this.b.buffer, this.b.byteOffset + start + 1, this.i - start - 2).toString('utf8');
  }

  /** The JSON text of a value, as sent. */
  raw(start: number, end: number): string {
    return Buffer.from(this.b.buffer, this.b.byteOffset + start, end - start).toString('utf8');
  }

  text(start: number, end: number): string {
    return JSON.parse(Buffer.from(this.b.buffer, this.b.byteOffset + start, end - start).toString('utf8')) as string;
  }

  value(depth: number): void {
    if (depth > MAX_DEPTH) throw badPayload(`JSON nested deeper than ${MAX_DEPTH} levels`);
    this.ws();
    const c = this.b[this.i];
    if (c === C.QUOTE) this.string();
    else if (c === C.LBRACE) this.container(C.RBRACE, depth, true);
    else if (c === C.LBRACKET) this.container(C.RBRACKET, depth, false);
    else if (c === 0x74) this.literal('true');
    else if (c === 0x66) this.literal('false');
    else if (c === 0x6e) this.literal('null');
    else if (c === C.MINUS || (c !== undefined && c >= 0x30 && c <= 0x39)) this.number();
    else throw invalid(this.i >= this.b.length ? 'unexpected end of JSON' : `unexpected character at byte ${this.i}`);
  }

  container(close: number, depth: number, isObject: boolean): void {
    this.i++;
    this.ws();
    if (this.b[this.i] === close) {
      this.i++;
      return;
    }
    for (;;) {
      if (isObject) {
        this.ws();
        if (this.b[this.i] !== C.QUOTE) throw invalid(`expected a string key at byte ${this.i}`);
        this.string();
        this.expect(C.COLON, '":"');
      }
      this.value(depth + 1);
      this.ws();
      const c = this.b[this.i++];
      if (c === close) return;
      if (c !== C.COMMA) throw invalid(`expected "," at byte ${this.i - 1}`);
    }
  }

  /** Skips a string starting at the opening quote; returns true when it contained escapes. */
  string(): boolean {
    const b = this.b;
    let i = this.i + 1;
    let escaped = false;
    for (;;) {
      const c = b[i];
      if (c === undefined) throw invalid('unterminated string');
      if (c === C.QUOTE) break;
      if (c < 0x20) throw invalid(`control character in string at byte ${i}`);
      if (c === C.BACKSLASH) {
        escaped = true;
        const e = b[i + 1];
        if (e === 0x75) {
          const code = hex4(b, i + 2);
          if (code === 0) throw badPayload('\\u0000 cannot be stored (PostgreSQL jsonb)');
          if (code >= 0xdc00 && code <= 0xdfff) throw badPayload('unpaired \\u surrogate escape');
          if (code >= 0xd800 && code <= 0xdbff) {
            const low = b[i + 6] === C.BACKSLASH && b[i + 7] === 0x75 ? hex4(b, i + 8) : -1;
            if (low < 0xdc00 || low > 0xdfff) throw badPayload('unpaired \\u surrogate escape');
            i += 6;
          }
          i += 6;
          continue;
        }
        if (e === 0x22 || e === 0x5c || e === 0x2f || e === 0x62 || e === 0x66 || e === 0x6e || e === 0x72 || e === 0x74) {
          i += 2;
          continue;
        }
        throw invalid(`bad escape in string at byte ${i}`);
      }
      i++;
    }
    this.i = i + 1;
    return escaped;
  }

  literal(word: string): void {
    for (let k = 0; k < word.length; k++) {
      if (this.b[this.i + k] !== word.charCodeAt(k)) throw invalid(`unexpected character at byte ${this.i}`);
    }
    this.i += word.length;
  }

  number(): void {
    const b = this.b;
    const start = this.i;
    let i = this.i;
    if (b[i] === C.MINUS) i++;
    if (b[i] === 0x30) i++;
    else if (isDigit(b[i])) while (isDigit(b[i])) i++;
    else throw invalid(`bad number at byte ${this.i}`);
    if (b[i] === 0x2e) {
      i++;
      if (!isDigit(b[i])) throw invalid(`bad number at byte ${this.i}`);
      while (isDigit(b[i])) i++;
    }
    if (b[i] === 0x65 || b[i] === 0x45) {
      i++;
      if (b[i] === 0x2b || b[i] === C.MINUS) i++;
      if (!isDigit(b[i])) throw invalid(`bad number at byte ${this.i}`);
      while (isDigit(b[i])) i++;
    }
    if (!fitsNumeric(b, start, i)) throw badPayload(`number at byte ${start} is out of PostgreSQL's numeric range`);
    this.i = i;
  }
}

function isDigit(c: number | undefined): boolean {
  return c !== undefined && c >= 0x30 && c <= 0x39;
}

function hex4(b: Uint8Array, at: number): number {
  let v = 0;
  for (let k = 0; k < 4; k++) {
    const c = b[at + k];
    let d: number;
    if (c === undefined) d = -1;
    else if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
    else if (c >= 0x41 && c <= 0x46) d = c - 0x37;
    else d = -1;
    if (d < 0) throw invalid(`bad \\u escape at byte ${at - 2}`);
    v = v * 16 + d;
  }
  return v;
}
