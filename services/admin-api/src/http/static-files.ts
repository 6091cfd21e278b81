import { createReadStream, existsSync, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import { requestPathname } from './request-meta';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

/**
 * Paths that are never a client-side route: the edge's and the writer's operations endpoints (a
 * probe or a Prometheus scrape pointed here by mistake must fail, not get the page with a 200).
 */
const NOT_ROUTES = new Set(['/readyz', '/metrics']);

/**
 * Serves the built single-page app from `dir`: files by path, `index.html` for client-side routes
 * (such as /collectors/register: a path whose last segment has no extension). A missing file
 * (`/assets/gone.js`, `/favicon.ico`) and the paths above get 404. Returns undefined when `dir` has
 * no build.
 */
export function createStaticHandler(dir: string): ((req: IncomingMessage, res: ServerResponse) => void) | undefined {
  const root = path.resolve(dir);
  const index = path.join(root, 'index.html');
  if (!existsSync(index)) return undefined;
  return (req, res) => {
    const encoded = requestPathname(req);
    if (encoded === undefined) return plain(res, 400, 'unparsable request URL\n');
    let pathname: string;
    try {
      pathname = decodeURIComponent(encoded);
    } catch {
      return plain(res, 400, 'malformed percent-encoding in the path\n');
    }
    let file = path.join(root, path.normalize(pathname));
    if (!file.startsWith(root + path.sep) || !existsSync(file) || !statSync(file).isFile()) {
      if (NOT_ROUTES.has(pathname) || path.extname(pathname) !== '' || pathname.startsWith('/assets/'))
        return plain(res, 404, `not found: ${pathname}\n`);
      file = index;
    }
    const immutable = file.includes(`${path.sep}assets${path.sep}`);
    res.writeHead(200, {
      'content-type': TYPES[path.extname(file)] ?? 'application/octet-stream',
      'cache-control': immutable ? 'public, max-age=31536000, immutable' : 'no-cache',
      'x-content-type-options': 'nosniff',
    });
    createReadStream(file).pipe(res);
  };
}

function plain(res: ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'content-type': 'text/plain; charset=utf-8', 'x-content-type-options': 'nosniff' }).end(text);
}
