import type { BenchResult } from '../harness/model';
export function renderHtml(r: BenchResult): string {
  return `<!doctype html><pre>${JSON.stringify(r).replace(/</g, '&lt;')}</pre>`;
}
