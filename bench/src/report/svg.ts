/** Small dependency-free SVG charts for the self-contained HTML report (no CDN, no script). */

export interface LineSeries {
  name: string;
  points: [number, number][];
}

const COLORS = ['#2563eb', '#dc2626', '#059669', '#d97706', '#7c3aed', '#db2777', '#0891b2', '#4b5563'];
const W = 640;
const H = 260;
const M = { l: 64, r: 16, t: 16, b: 40 };

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function niceTicks(min: number, max: number, count = 5): number[] {
  if (!(max > min)) return [min];
  const step0 = (max - min) / count;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(min / step) * step; v <= max + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

const fmt = (v: number) =>
  Math.abs(v) >= 1000
    ? `${+(v / 1000).toPrecision(3)}k`
    : Math.abs(v) >= 1 || v === 0
      ? `${+v.toPrecision(3)}`
      : v.toPrecision(2);

export interface LineChartOptions {
  title: string;
  xLabel: string;
  yLabel: string;
  logY?: boolean;
  /** Custom x tick labels (e.g. percentiles). */
  xTickLabel?: (x: number) => string;
  xTicks?: number[];
}

export function lineChart(series: LineSeries[], o: LineChartOptions): string {
  const pts = series.flatMap((s) => s.points).filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
  if (!pts.length) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const xs = pts.map((p) => p[0]);
  const ys = pts.map((p) => p[1]);
  const x0 = Math.min(...xs);
  const x1 = Math.max(...xs) === x0 ? x0 + 1 : Math.max(...xs);
  const ty = (v: number) => (o.logY ? Math.log10(Math.max(v, 1e-6)) : v);
  let y0 = o.logY ? Math.floor(ty(Math.min(...ys))) : 0;
  let y1 = o.logY ? Math.ceil(ty(Math.max(...ys))) : Math.max(...ys) * 1.08;
  if (y1 <= y0) y1 = y0 + 1;
  if (!o.logY && y0 === y1) y0 = 0;
  const px = (x: number) => M.l + ((x - x0) / (x1 - x0)) * (W - M.l - M.r);
  const py = (y: number) => H - M.b - ((ty(y) - y0) / (y1 - y0)) * (H - M.t - M.b);
  const yTicks = o.logY ? Array.from({ length: y1 - y0 + 1 }, (_, i) => 10 ** (y0 + i)) : niceTicks(0, y1);
  const xTicks = o.xTicks ?? niceTicks(x0, x1, 8);
  const parts = [
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.title)}"><title>${esc(o.title)}</title>`,
    ...yTicks.map(
      (v) =>
        `<line x1="${M.l}" x2="${W - M.r}" y1="${py(v)}" y2="${py(v)}" class="grid"/><text x="${M.l - 6}" y="${py(v) + 4}" text-anchor="end">${fmt(v)}</text>`,
    ),
    ...xTicks.map(
      (v) => `<text x="${px(v)}" y="${H - M.b + 16}" text-anchor="middle">${esc(o.xTickLabel ? o.xTickLabel(v) : fmt(v))}</text>`,
    ),
    `<text x="${(M.l + W - M.r) / 2}" y="${H - 6}" text-anchor="middle" class="axis">${esc(o.xLabel)}</text>`,
    `<text x="14" y="${(M.t + H - M.b) / 2}" text-anchor="middle" class="axis" transform="rotate(-90 14 ${(M.t + H - M.b) / 2})">${esc(o.yLabel)}</text>`,
  ];
  series.forEach((s, i) => {
    const valid = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y) && (!o.logY || y > 0));
    if (!valid.length) return;
    const d = valid.map(([x, y], j) => `${j ? 'L' : 'M'}${px(x).toFixed(1)},${py(y).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="1.8"/>`);
  });
  parts.push('</svg>');
  const legend = series
    .map((s, i) => `<span><i style="background:${COLORS[i % COLORS.length]}"></i>${esc(s.name)}</span>`)
    .join('');
  return `<figure><figcaption>${esc(o.title)}</figcaption>${parts.join('')}<div class="legend">${legend}</div></figure>`;
}

export interface Bar {
  label: string;
  value: number;
}

export function barChart(bars: Bar[], o: { title: string; xLabel: string; yLabel: string }): string {
  if (!bars.length) return `<p class="empty">${esc(o.title)}: no data</p>`;
  const max = Math.max(...bars.map((b) => b.value), 1);
  const bw = (W - M.l - M.r) / bars.length;
  const py = (v: number) => H - M.b - (v / max) * (H - M.t - M.b);
  const every = Math.ceil(bars.length / 10);
  const parts = [
    `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${esc(o.title)}"><title>${esc(o.title)}</title>`,
    ...niceTicks(0, max).map(
      (v) =>
        `<line x1="${M.l}" x2="${W - M.r}" y1="${py(v)}" y2="${py(v)}" class="grid"/><text x="${M.l - 6}" y="${py(v) + 4}" text-anchor="end">${fmt(v)}</text>`,
    ),
    ...bars.map(
      (b, i) =>
        `<rect x="${(M.l + i * bw + 1).toFixed(1)}" y="${py(b.value).toFixed(1)}" width="${Math.max(1, bw - 2).toFixed(1)}" height="${(H - M.b - py(b.value)).toFixed(1)}" fill="${COLORS[0]}"><title>${esc(b.label)}: ${b.value}</title></rect>` +
        (i % every === 0
          ? `<text x="${(M.l + i * bw + bw / 2).toFixed(1)}" y="${H - M.b + 16}" text-anchor="middle">${esc(b.label)}</text>`
          : ''),
    ),
    `<text x="${(M.l + W - M.r) / 2}" y="${H - 6}" text-anchor="middle" class="axis">${esc(o.xLabel)}</text>`,
    `<text x="14" y="${(M.t + H - M.b) / 2}" text-anchor="middle" class="axis" transform="rotate(-90 14 ${(M.t + H - M.b) / 2})">${esc(o.yLabel)}</text>`,
    '</svg>',
  ];
  return `<figure><figcaption>${esc(o.title)}</figcaption>${parts.join('')}</figure>`;
}
