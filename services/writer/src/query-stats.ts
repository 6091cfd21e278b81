/**
 * Tokens of a JSON text that matter for its structure: a string (a key or a value, escapes
 * included) or a bracket. Numbers, literals, commas, colons and whitespace between them are never
 * matched, and never hold a quote: a search that resumes at a token's end finds the next token's start.
 */
const TOKEN = /"[^"\\]*(?:\\.[^"\\]*)*"|[{}[\]]/g;
/** `: <number>` after a key (lastIndex at the key's end); group 1 is the number. */
const NUMBER_VALUE = /\s*:\s*(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)(?=\s*[,}\]])/y;
/** `: [` after a key. */
const ARRAY_VALUE = /\s*:\s*\[/y;
/** `:` after a string token: it is a key. */
const KEY = /\s*:/y;

const OPEN_OBJ = 0x7b;
const OPEN_ARR = 0x5b;
const CLOSE_OBJ = 0x7d;
const CLOSE_ARR = 0x5d;
const QUOTE = 0x22;

/** Whether the string token ending at `end` is exactly `"name"` (its opening quote not an escaped one). */
function tokenIs(t: string, end: number, name: string): boolean {
  const start = end - name.length - 2;
  return t.charCodeAt(start) === QUOTE && t.charCodeAt(start - 1) !== 0x5c && t.startsWith(name, start + 1);
}

function isKey(t: string, end: number): boolean {
  KEY.lastIndex = end;
  return KEY.test(t);
}

function numberAfter(t: string, keyEnd: number): number | undefined {
  NUMBER_VALUE.lastIndex = keyEnd;
  const m = NUMBER_VALUE.exec(t);
  return m ? Number(m[1]) : undefined;
}

/**
 * The `pg_query_stats` counters of one metric element (its JSON text, as latin1: one character per
 * byte, so keys and numbers match exactly without decoding UTF-8): `calls` and `total_time` summed
 * over the entries of its top-level `queries` array — per entry `total_time`, or PostgreSQL 13+'s
 * `total_exec_time` when the entry has no `total_time`. Only those members count: a number of the
 * same name elsewhere (a summary, an object nested in an entry, a query's text) is not a query's.
 * The last `queries` key counts, as in jsonb. Keys are compared as written (a key spelled with a
 * `\u` escape is not recognised). One native regex search per string or bracket, not a
 * byte loop or JSON.parse (either cost more than the rest of the writer's work on a push).
 */
export function queryStats(t: string): { calls: number; totalTime: number } {
  let calls = 0;
  let totalTime = 0;
  let depth = 0;
  /** Depth of the `queries` array being read (entries are at +1), or -1. */
  let queriesDepth = -1;
  let entryCalls: number | undefined;
  let entryTotal: number | undefined;
  let entryExec: number | undefined;
  TOKEN.lastIndex = 0;
  while (TOKEN.test(t)) {
    const end = TOKEN.lastIndex;
    const c = t.charCodeAt(end - 1);
    if (c === OPEN_OBJ || c === OPEN_ARR) {
      depth++;
      if (depth === queriesDepth + 1 && c === OPEN_OBJ) entryCalls = entryTotal = entryExec = undefined;
    } else if (c === CLOSE_OBJ || c === CLOSE_ARR) {
      if (depth === queriesDepth + 1 && c === CLOSE_OBJ) {
        calls += entryCalls ?? 0;
        totalTime += entryTotal ?? entryExec ?? 0;
      } else if (depth === queriesDepth) queriesDepth = -1;
      depth--;
    } else if (depth === 1) {
      if (tokenIs(t, end, 'queries') && isKey(t, end)) {
        // The last `queries` key counts, whatever its value (jsonb keeps the last): start over,
        // and read entries only if it is an array (its `[` is the next token).
        calls = 0;
        totalTime = 0;
        ARRAY_VALUE.lastIndex = end;
        if (ARRAY_VALUE.test(t)) queriesDepth = 2;
      }
    } else if (queriesDepth > 0 && depth === queriesDepth + 1) {
      // The last occurrence of a key counts (as in jsonb), also when its value is not a number.
      if (tokenIs(t, end, 'calls')) {
        if (isKey(t, end)) entryCalls = numberAfter(t, end);
      } else if (tokenIs(t, end, 'total_time')) {
        if (isKey(t, end)) entryTotal = numberAfter(t, end);
      } else if (tokenIs(t, end, 'total_exec_time')) {
        if (isKey(t, end)) entryExec = numberAfter(t, end);
      }
    }
  }
  return { calls: Math.round(calls), totalTime };
}
