import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStaticHandler } from './static-files';

describe('the web UI files', () => {
  let dir: string;
  let server: Server;
  let url: string;
  beforeAll(async () => {
    dir = mkdtempSync(path.join(os.tmpdir(), 'pga-static-'));
    mkdirSync(path.join(dir, 'assets'));
    writeFileSync(path.join(dir, 'index.html'), '<!doctype html><title>pga</title>');
    writeFileSync(path.join(dir, 'assets', 'app-1a2b.js'), 'console.log(1)');
    const handler = createStaticHandler(dir)!;
    server = createServer(handler);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  afterAll(async () => {
    await new Promise((resolve) => server?.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  const get = async (p: string) => {
    const res = await fetch(url + p);
    return { status: res.status, type: res.headers.get('content-type'), body: await res.text() };
  };

  it('serves files and the page for client-side routes', async () => {
    expect(await get('/')).toMatchObject({ status: 200, type: 'text/html; charset=utf-8' });
    expect(await get('/collectors/register')).toMatchObject({ status: 200, body: '<!doctype html><title>pga</title>' });
    expect(await get('/assets/app-1a2b.js')).toMatchObject({ status: 200, type: 'text/javascript; charset=utf-8' });
  });

  it('answers 404 for a missing file and for an operations path, not the page with 200', async () => {
    for (const p of ['/assets/app-old.js', '/favicon.ico', '/readyz', '/metrics', '/assets/chunk'])
      expect(await get(p), p).toMatchObject({ status: 404, body: `not found: ${p}\n` });
  });

  it('answers 400 for a path that is not valid percent-encoding (it threw in the request handler)', async () => {
    expect(await get('/%E0%A4%A')).toMatchObject({ status: 400, body: 'malformed percent-encoding in the path\n' });
    expect((await get('/')).status).toBe(200);
  });

  it('answers 400 "unparsable request URL" for a request target that is not a URL', async () => {
    const { port } = new URL(url);
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      // node:http writes `path` into the request line as it is: an absolute-form target with a bad port.
      const req = request({ host: '127.0.0.1', port, path: 'http://x:99999/' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (body += chunk));
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      req.end();
    });
    expect(answer).toEqual({ status: 400, body: 'unparsable request URL\n' });
  });
});
