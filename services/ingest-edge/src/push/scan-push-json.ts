import { AppError } from '@pga/contracts';

/** What the edge needs from a push body; everything else stays as the bytes received. */
export interface PushScan {
  /** Top-level `collector_id` when it is a string. */
  collectorId?: string;
  /** Top-level `push_id` when it is a string. */
  pushId?: string;
  /** Elements of a top-level `metrics` array (envelope shape); undefined for a flat push. */
  metricsCount?: number;
}

// PostgreSQL's own parser gives up far deeper, but nothing a collector sends nests this deep.
const MAX_DEPTH = 256;

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
 * Two paths with one outcome. V8's JSON.parse validates syntax about twice as fast as a JavaScript
 * byte scanner, so it is used when it can see everything that matters: no `\u` escape in the body
 * (the only way to write U+0000 or a lone surrogate in valid UTF-8 JSON) and at most MAX_DEPTH
 * `{`/`[` bytes (so nesting cannot exceed the limit). Otherwise — and to word the error of any body
 * JSON.parse refuses — the byte scanner decides.
 */
export function scanPushJson(b: Uint8Array, text?: string): PushScan {
  const buf = Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  if (buf.indexOf(ESCAPE_U) < 0 && openersAtMost(buf, MAX_DEPTH)) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text ?? buf.toString('utf8'));
    } catch {
      return scanBytes(b); // throws, with the scanner's precise message
    }
    return fromParsed(parsed);
  }
  return scanBytes(b);
}

const ESCAPE_U = Buffer.from('\\u');

/** True when `b` holds at most `limit` bytes `{` and `[` together (native searches, no byte loop). */
function openersAtMost(b: Buffer, limit: number): boolean {
  let n = 0;
  for (const ch of [C.LBRACE, C.LBRACKET]) {
    let at = b.indexOf(ch);
    while (at >= 0) {
      if (++n > limit) return false;
      at = b.indexOf(ch, at + 1);
    }
  }
  return true;
}

/** The scan of a body JSON.parse accepted: the same checks the byte scanner makes. */
function fromParsed(v: unknown): PushScan {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw badPayload('body must be a JSON object');
  const o = v as Record<string, unknown>;
  const scan: PushScan = {};
  for (const key of ['collector_id', 'push_id'] as const) {
    const value = o[key];
    if (value === undefined) continue;
    if (typeof value !== 'string') throw badPayload(`${key} must be a string`);
    if (key === 'collector_id') scan.collectorId = value;
    else scan.pushId = value;
  }
  const metrics = o.metrics;
  if (Array.isArray(metrics)) {
    for (let n = 0; n < metrics.length; n++) {
      const e: unknown = metrics[n];
      if (typeof e !== 'object' || e === null || Array.isArray(e)) throw badPayload(`metrics[${n}] must be an object`);
      const type = (e as { type?: unknown }).type;
      if (typeof type !== 'string' || type.length < 1 || type.length > 100)
        throw badPayload(`metrics[${n}] needs a "type" string of 1-100 characters`);
    }
    scan.metricsCount = metrics.length;
  }
  return scan;
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
  return scan;
}

class Scanner {
  i = 0;
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
      } else {
        if (key === 'metrics') scan.metricsCount = undefined;
        const isString = this.b[this.i] === C.QUOTE;
        this.value(1);
        if (key === 'collector_id' || key === 'push_id') {
          if (!isString) throw badPayload(`${key} must be a string`);
          const text = this.text(start, this.i);
          if (key === 'collector_id') scan.collectorId = text;
          else scan.pushId = text;
        }
      }
      this.ws();
      const c = this.b[this.i++];
      if (c === C.RBRACE) return scan;
      if (c !== C.COMMA) throw invalid(`expected "," or "}" at byte ${this.i - 1}`);
    }
  }

  /** The envelope's `metrics`: every element must be an object with a string `type` of 1–100 characters. */
  metricsArray(): number {
    this.i++; // [
    this.ws();
    let n = 0;
    if (this.b[this.i] === C.RBRACKET) {
      this.i++;
      return 0;
    }
    for (;;) {
      this.ws();
      if (this.b[this.i] !== C.LBRACE) throw badPayload(`metrics[${n}] must be an object`);
      if (!this.metricElement()) throw badPayload(`metrics[${n}] needs a "type" string of 1-100 characters`);
      n++;
      this.ws();
      const c = this.b[this.i++];
      if (c === C.RBRACKET) return n;
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
      if (key === 'type') {
        const len = isString ? this.text(start, this.i).length : 0;
        typeOk = len >= 1 && len <= 100;
      }
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
