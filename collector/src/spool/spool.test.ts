import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { openSpool } from './spool';

const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'pga-spool-'));
  dirs.push(d);
  return d;
};
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

function captureLogger() {
  const lines: Record<string, unknown>[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(JSON.parse(line)) });
  return { logger, lines };
}

describe('spool', () => {
  it('keeps snapshots oldest first across reopen (a restart resumes from it), files 0600', async () => {
    const dir = tempDir();
    const { logger } = captureLogger();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, maxFiles: 100, logger });
    const ids = [randomUUID(), randomUUID(), randomUUID()];
    for (const id of ids) await spool.add(id, Buffer.from(id));
    const reopened = await openSpool({ dir, maxBytes: 1 << 20, maxFiles: 100, logger });
    const order: string[] = [];
    for (let e = reopened.oldest(); e; e = reopened.oldest()) {
      expect((await reopened.read(e)).toString()).toBe(e.pushId);
      order.push(e.pushId);
      await reopened.remove(e);
    }
    expect(order).toEqual(ids);
    // Sequence numbers continue after a reopen: a new snapshot sorts after the old ones.
    const next = await reopened.add(randomUUID(), Buffer.from('x'));
    expect(next.name.startsWith('000000000004-')).toBe(true);
    expect(statSync(path.join(dir, next.name)).mode & 0o777).toBe(0o600);
  });

  it('drops the oldest only when full, counting and logging each drop', async () => {
    const dir = tempDir();
    const { logger, lines } = captureLogger();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, maxFiles: 3, logger });
    const ids = Array.from({ length: 5 }, () => randomUUID());
    for (const id of ids) await spool.add(id, Buffer.alloc(10));
    expect(spool.stats()).toMatchObject({ files: 3, dropped: 2, bytes: 30 });
    expect(spool.oldest()!.pushId).toBe(ids[2]);
    const drops = lines.filter((l) => l.msg === 'spool full: dropped the oldest snapshot');
    expect(drops.map((l) => l.push_id)).toEqual([ids[0], ids[1]]);
    expect(drops.every((l) => l.level === 50)).toBe(true);

    const bySize = await openSpool({ dir: tempDir(), maxBytes: 25, maxFiles: 100, logger });
    for (const id of ids.slice(0, 3)) await bySize.add(id, Buffer.alloc(10));
    expect(bySize.stats()).toMatchObject({ files: 2, dropped: 1, bytes: 20 });
  });

  it('sets a rejected snapshot aside and cleans interrupted writes at open', async () => {
    const dir = tempDir();
    const { logger, lines } = captureLogger();
    const spool = await openSpool({ dir, maxBytes: 1 << 20, maxFiles: 10, logger });
    const entry = await spool.add(randomUUID(), Buffer.from('bad'));
    await spool.setAside(entry, 'push: 400 INVALID_PAYLOAD');
    expect(spool.oldest()).toBeUndefined();
    expect(readdirSync(path.join(dir, 'rejected'))).toEqual([entry.name]);
    expect(lines.some((l) => l.level === 50 && l.reason === 'push: 400 INVALID_PAYLOAD')).toBe(true);
    await import('node:fs/promises').then((fs) => fs.writeFile(path.join(dir, '.tmp-000000000009-x.json.gz'), 'half'));
    await openSpool({ dir, maxBytes: 1 << 20, maxFiles: 10, logger });
    expect(readdirSync(dir).filter((n) => n.startsWith('.tmp-'))).toEqual([]);
  });
});
