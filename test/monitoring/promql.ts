/**
 * Just enough PromQL and Prometheus text format for test/monitoring/alerts.test.ts: which metric
 * selectors (name and label matchers) and which grouping labels an expression uses, and which series
 * a /metrics page holds. Not a full parser: it reads what alerting rules are made of (selectors,
 * functions, aggregations with by/without, binary operators with on/ignoring/group_*, durations).
 */

export interface Matcher {
  label: string;
  op: '=' | '!=' | '=~' | '!~';
  value: string;
}

export interface Selector {
  metric: string;
  matchers: Matcher[];
}

export interface ExprUse {
  selectors: Selector[];
  /** Labels named in by (…), without (…), on (…), ignoring (…), group_left (…), group_right (…). */
  groupingLabels: string[];
}

const GROUPING = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right']);
const KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan', 'atan2']);
/** Aggregation operators: their `by (…)`/`without (…)` may come before the parenthesis. */
const AGGREGATIONS = new Set(
  'sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk limit_ratio'.split(' '),
);

export function parseExpr(expr: string): ExprUse {
  const selectors: Selector[] = [];
  const groupingLabels: string[] = [];
  let i = 0;
  const n = expr.length;
  const skipSpace = () => {
    while (i < n && /\s/.test(expr[i]!)) i++;
  };
  const readString = (): string => {
    const quote = expr[i]!;
    i++;
    let out = '';
    while (i < n && expr[i] !== quote) {
      if (expr[i] === '\\' && i + 1 < n) {
        const next = expr[i + 1]!;
        out += next === 'n' ? '\n' : next === 't' ? '\t' : next;
        i += 2;
      } else out += expr[i++];
    }
    if (i >= n) throw new Error(`unterminated string in ${expr}`);
    i++;
    return out;
  };
  const readIdent = (): string => {
    const m = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(expr.slice(i));
    if (!m) throw new Error(`identifier expected at ${i} in ${expr}`);
    i += m[0].length;
    return m[0];
  };
  const readMatchers = (): Matcher[] => {
    // at '{'
    i++;
    const matchers: Matcher[] = [];
    for (;;) {
      skipSpace();
      if (expr[i] === '}') {
        i++;
        return matchers;
      }
      const label = readIdent();
      skipSpace();
      const op = /^(=~|!~|!=|=)/.exec(expr.slice(i))?.[0] as Matcher['op'] | undefined;
      if (!op) throw new Error(`matcher operator expected at ${i} in ${expr}`);
      i += op.length;
      skipSpace();
      if (expr[i] !== '"' && expr[i] !== "'") throw new Error(`matcher value expected at ${i} in ${expr}`);
      matchers.push({ label, op, value: readString() });
      skipSpace();
      if (expr[i] === ',') i++;
    }
  };
  const readLabelList = () => {
    skipSpace();
    if (expr[i] !== '(') return; // group_left without labels
    i++;
    for (;;) {
      skipSpace();
      if (expr[i] === ')') {
        i++;
        return;
      }
      groupingLabels.push(readIdent());
      skipSpace();
      if (expr[i] === ',') i++;
    }
  };
  while (i < n) {
    const c = expr[i]!;
    if (/\s/.test(c)) i++;
    else if (c === '"' || c === "'" || c === '`') readString();
    else if (c === '[') {
      // range or subquery duration
      const end = expr.indexOf(']', i);
      if (end < 0) throw new Error(`unterminated [ in ${expr}`);
      i = end + 1;
    } else if (c === '{') {
      selectors.push({ metric: '', matchers: readMatchers() });
    } else if (/[0-9.]/.test(c)) {
      const m = /^(0x[0-9a-fA-F]+|[0-9]*\.?[0-9]+(e[+-]?[0-9]+)?([smhdwy]|ms)?)/.exec(expr.slice(i));
      i += m ? m[0].length : 1;
    } else if (/[a-zA-Z_:]/.test(c)) {
      const ident = readIdent();
      skipSpace();
      const lower = ident.toLowerCase();
      if (GROUPING.has(lower)) readLabelList();
      else if (KEYWORDS.has(lower) || AGGREGATIONS.has(lower)) continue;
      else if (expr[i] === '(')
        continue; // a function or an aggregation
      else if (expr[i] === '{') selectors.push({ metric: ident, matchers: readMatchers() });
      else selectors.push({ metric: ident, matchers: [] });
    } else i++;
  }
  return { selectors, groupingLabels };
}

export interface Series {
  name: string;
  labels: Record<string, string>;
}

/** The series of a Prometheus text exposition (comments and HELP/TYPE lines skipped). */
export function parseExposition(text: string): Series[] {
  const series: Series[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[3] ?? '';
    const re = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*,?/g;
    let lm: RegExpExecArray | null;
    while ((lm = re.exec(body))) labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, ch: string) => (ch === 'n' ? '\n' : ch));
    series.push({ name: m[1]!, labels });
  }
  return series;
}

/**
 * The series as a Prometheus scrape with honor_labels false stores them: the target's `job` and
 * `instance` added, a series' own label of that name kept as `exported_<name>`.
 */
export function asScraped(series: Series[], job: string, instance: string): Series[] {
  return series.map(({ name, labels }) => {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(labels)) out[k === 'job' || k === 'instance' ? `exported_${k}` : k] = v;
    return { name, labels: { ...out, job, instance } };
  });
}

/** What Prometheus itself records per target. */
export function scrapeSeries(job: string, instance: string): Series[] {
  return ['up', 'scrape_duration_seconds', 'scrape_samples_scraped', 'scrape_series_added'].map((name) => ({
    name,
    labels: { job, instance },
  }));
}

/** Problems with the selectors and grouping labels of `expr` against `series` (empty: all found). */
export function checkExpr(expr: string, series: Series[]): string[] {
  const problems: string[] = [];
  const use = parseExpr(expr);
  const byName = new Map<string, Series[]>();
  for (const s of series) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
  const usedSeries: Series[] = [];
  for (const sel of use.selectors) {
    if (!sel.metric) {
      problems.push(`selector without a metric name in ${expr}`);
      continue;
    }
    const found = byName.get(sel.metric);
    if (!found) {
      problems.push(`metric ${sel.metric} is not in any scrape`);
      continue;
    }
    usedSeries.push(...found);
    for (const m of sel.matchers) {
      const withLabel = found.filter((s) => m.label in s.labels);
      if (withLabel.length === 0) {
        problems.push(`label ${m.label} of ${sel.metric} is not in the scrape (${sel.metric} has ${labelNames(found)})`);
        continue;
      }
      const values = [...new Set(withLabel.map((s) => s.labels[m.label]!))];
      if (m.op === '=' && !values.includes(m.value))
        problems.push(`${sel.metric}{${m.label}="${m.value}"} matches no scraped series (values: ${values.join(', ')})`);
      if (m.op === '=~') {
        const re = new RegExp(`^(?:${m.value})$`);
        const alternatives = /^[\w|]+$/.test(m.value) ? m.value.split('|') : undefined;
        // A plain alternation must have every alternative scraped (a renamed value would hide in it).
        const missing = alternatives
          ? alternatives.filter((a) => !values.includes(a))
          : values.some((v) => re.test(v))
            ? []
            : [m.value];
        if (missing.length)
          problems.push(
            `${sel.metric}{${m.label}=~"${m.value}"}: ${missing.join(', ')} not scraped (values: ${values.join(', ')})`,
          );
      }
    }
  }
  for (const label of use.groupingLabels)
    if (!usedSeries.some((s) => label in s.labels))
      problems.push(`grouping label ${label} is on none of the expression's metrics (${expr.replace(/\s+/g, ' ')})`);
  return problems;
}

const labelNames = (series: Series[]) => [...new Set(series.flatMap((s) => Object.keys(s.labels)))].join(', ') || 'no labels';
