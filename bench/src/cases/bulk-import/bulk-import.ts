import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { startGeneratorMeter } from '../../harness/generator-meter';
import type { FigureDef, Measurement } from '../../harness/model';
import type { Scenario } from '../../harness/scenario';
import { REPO_ROOT } from '../../harness/stack';
import { adminClient, adminMissing } from '../shared/admin-client';

const SIZES = [100, 1000, 10_000] as const;

function csv(count: number, tag: string): string {
  const lines = ['name,type,environment,host,port,database,username,password,tags'];
  for (let i = 0; i < count; i++)
    lines.push(`bulk-${tag}-${i},postgresql,production,db-${tag}-${i}.example,5432,app,monitor,pw-${i},bench;bulk`);
  return `${lines.join('\n')}\n`;
}

/**
 * bulk-import: collectors.bulkImport over HTTP with a CSV of 100, 1,000 and (full suite) 10,000
 * collectors, each row validated, encrypted, given a token and audited: wall time per file.
 */
export const bulkImport: Scenario = {
  name: 'bulk-import',
  goal: 'collectors.bulkImport of a CSV with 100, 1,000 and 10,000 (full suite only) collectors over HTTP: time per file (design target: 100+ in < 5 minutes).',
  figures: SIZES.flatMap((n): FigureDef[] => [
    {
      key: `import_${n}_s`,
      label: `${n.toLocaleString('en')} collectors: import time`,
      unit: 's',
      better: 'lower',
      ...(n === 100 ? { target: '< 300 s' } : {}),
    },
    { key: `import_${n}_per_s`, label: `${n.toLocaleString('en')} collectors: collectors/s`, unit: 'coll/s', better: 'higher' },
  ]),
  unavailable() {
    return (
      adminMissing() ??
      (existsSync(path.join(REPO_ROOT, 'services/admin-api/src/routers/collectors/bulk-import.ts'))
        ? undefined
        : 'needs collectors.bulkImport in the admin service (not built yet)')
    );
  },
  async run(ctx) {
    const admin = await adminClient(ctx);
    const figures: Record<string, Measurement> = {};
    const notes: string[] = [];
    for (const n of SIZES) {
      if (n > 1000 && ctx.mode !== 'full') continue;
      const content = csv(n, randomBytes(4).toString('hex'));
      ctx.progress.update(`${ctx.label}: importing ${n} collectors`);
      const meter = startGeneratorMeter();
      const t = performance.now();
      const res = await admin.mutation<{ created: number; errors: number }>('collectors.bulkImport', {
        format: 'csv',
        content,
        mode: 'per_row',
      });
      const seconds = (performance.now() - t) / 1000;
      if (res.status !== 200 || !res.data) throw new Error(`bulkImport of ${n} answered HTTP ${res.status}`);
      if (res.data.created !== n) notes.push(`${n}: only ${res.data.created} created, ${res.data.errors} errors`);
      const generator = meter.stop();
      figures[`import_${n}_s`] = { value: seconds, generator };
      figures[`import_${n}_per_s`] = { value: res.data.created / seconds, generator };
    }
    if (ctx.mode !== 'full') notes.push('the 10,000-collector file runs in the full suite only (--full)');
    return { figures, notes };
  },
};
