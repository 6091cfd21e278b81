import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from '@pga/logger';

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(full) : statSync(full).mtimeMs);
  }
  return newest;
}

/** Builds the web UI (vite) when web/dist is missing or older than web/src, so the admin service serves it. */
export async function ensureWebBuild(root: string, logger: Logger): Promise<void> {
  const web = path.join(root, 'web');
  const built = path.join(web, 'dist', 'index.html');
  if (
    existsSync(built) &&
    statSync(built).mtimeMs >= Math.max(newestMtime(path.join(web, 'src')), statSync(path.join(web, 'index.html')).mtimeMs)
  ) {
    return;
  }
  logger.info('building the web UI…');
  const res = spawnSync('npm', ['run', 'build', '-w', '@pga/web'], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  if (res.status !== 0) throw new Error('building the web UI failed (npm run build -w @pga/web)');
}
