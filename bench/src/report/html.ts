import type { BenchResult, ScenarioResult } from '../harness/model';
import { renderMarkdown } from './markdown';
import { barChart, lineChart, type LineSeries } from './svg';

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** Markdown tables → HTML (only what renderMarkdown emits: headings, tables, bullets, paragraphs). */
function markdownToHtml(md: string): string {
  const out: string[] = [];
  let table: string[][] | undefined;
  const inline = (s: string) =>
    esc(s)
      .replace(/\*\*(.+?)\*\*/g, '<b>$1</b>')
      .replace(/_(.+?)_$/g, '<i>$1</i>');
  const flush = () => {
    if (!table) return;
    const [head, , ...body] = table;
    out.push(
      `<table><thead><tr>${head!.map((c) => `<th>${inline(c)}</th>`).join('')}</tr></thead><tbody>${body
        .map((r) => `<tr>${r.map((c, i) => `<td${i > 0 && i < 3 ? ' class="num"' : ''}>${inline(c)}</td>`).join('')}</tr>`)
        .join('')}</tbody></table>`,
    );
    table = undefined;
  };
  let prevText = false;
  for (const line of md.split('\n')) {
    if (line.startsWith('|')) {
      prevText = false;
      (table ??= []).push(
        line
          .slice(1, -1)
          .split('|')
          .map((c) => c.trim()),
      );
      continue;
    }
    flush();
    if (line.startsWith('## ')) out.push(`<h2 id="${esc(line.slice(3))}">${inline(line.slice(3))}</h2>`);
    else if (line.startsWith('# ')) out.push(`<h1>${inline(line.slice(2))}</h1>`);
    else if (line.startsWith('- ')) out.push(`<li>${inline(line.slice(2))}</li>`);
    else if (line.trim()) {
      // Consecutive text lines form one paragraph.
      const last = out.at(-1);
      if (last?.startsWith('<p>') && prevText) out[out.length - 1] = `${last.slice(0, -4)} ${inline(line)}</p>`;
      else out.push(`<p>${inline(line)}</p>`);
    }
    prevText = Boolean(line.trim()) && !line.startsWith('#') && !line.startsWith('- ');
  }
  flush();
  return out.join('\n');
}

function scenarioCharts(s: ScenarioResult): string {
  const charts: string[] = [];
  const timelineRuns = s.runs.filter((r) => r.timelines && Object.keys(r.timelines).length);
  if (timelineRuns.length) {
    const through: LineSeries[] = [];
    const lat: LineSeries[] = [];
    timelineRuns.forEach((r, i) => {
      const points = Object.values(r.timelines!).flat();
      through.push({ name: `run ${i + 1}`, points: points.map((p) => [p.t, p.ok]) });
      lat.push({ name: `run ${i + 1} p99`, points: points.map((p) => [p.t, p.p99]) });
    });
    const phases = Object.keys(timelineRuns[0]!.timelines!).join(' → ');
    charts.push(
      lineChart(through, { title: `${s.name}: acknowledged per second (${phases})`, xLabel: 'seconds', yLabel: 'acked/s' }),
      lineChart(lat, { title: `${s.name}: ack latency p99 per second`, xLabel: 'seconds', yLabel: 'ms (log)', logY: true }),
    );
  }
  const first = s.runs.find((r) => r.spectra && Object.keys(r.spectra).length);
  if (first) {
    const tx = (p: number) => Math.log10(100 / Math.max(100 - p, 0.001));
    const series: LineSeries[] = Object.entries(first.spectra!).map(([name, pts]) => ({
      name,
      points: pts.map((p) => [tx(p.percentile), p.ms]),
    }));
    charts.push(
      lineChart(series, {
        title: `${s.name}: latency by percentile (run 1, each phase)`,
        xLabel: 'percentile',
        yLabel: 'ms (log)',
        logY: true,
        xTicks: [0, 1, 2, 3, 4, 5],
        xTickLabel: (x) => ['0', '90', '99', '99.9', '99.99', '100'][Math.round(x)] ?? '',
      }),
    );
  }
  const withBins = s.runs.find((r) => r.bins && Object.keys(r.bins).length);
  if (withBins) {
    const name = Object.keys(withBins.bins!).find((k) => k.includes('50')) ?? Object.keys(withBins.bins!)[0]!;
    charts.push(
      barChart(
        withBins.bins![name]!.map((b) => ({ label: b.fromMs >= 1 ? b.fromMs.toFixed(0) : b.fromMs.toFixed(2), value: b.count })),
        { title: `${s.name}: latency histogram (${name}, run 1)`, xLabel: 'ms (log bins, lower edge)', yLabel: 'requests' },
      ),
    );
  }
  return charts.length ? `<section class="charts">${charts.join('\n')}</section>` : '';
}

/** A self-contained page: the Markdown summary as tables plus SVG charts per scenario. */
export function renderHtml(r: BenchResult): string {
  const body = markdownToHtml(renderMarkdown(r));
  // Put each scenario's charts after its section (before the next <h2>).
  const sections = body.split(/(?=<h2 )/);
  const withCharts = sections
    .map((sec) => {
      const name = /<h2 id="([^"]+)"/.exec(sec)?.[1];
      const s = r.scenarios.find((x) => x.name === name);
      return s ? sec + scenarioCharts(s) : sec;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pgAnalytics bench ${esc(r.startedAt)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;max-width:1100px;margin:24px auto;padding:0 16px;color:#111}
table{border-collapse:collapse;margin:8px 0 16px;width:100%}th,td{border-bottom:1px solid #e5e7eb;padding:4px 8px;text-align:left}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}h2{margin-top:32px;border-top:2px solid #111;padding-top:12px}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(460px,1fr));gap:12px}figure{margin:0}
figcaption{font-weight:600;margin-bottom:4px}svg{width:100%;height:auto;font-size:11px;background:#fafafa}
svg .grid{stroke:#e5e7eb}svg .axis{fill:#374151}.legend span{margin-right:12px}.legend i{display:inline-block;width:10px;height:10px;margin-right:4px}
</style></head><body>
${withCharts}
</body></html>
`;
}
