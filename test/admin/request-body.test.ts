import { request, type IncomingHttpHeaders } from 'node:http';
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { ADMIN_PASSWORD, VIEWER_PASSWORD, createHarness, httpLogin, type Harness } from './harness';
import { form } from './fixtures';

const KiB = 1024;
const MiB = 1024 * KiB;
/** Every procedure's body limit but collectors.bulkImport's (http/request-body.ts MAX_CALL_BODY_BYTES). */
const CALL_LIMIT = 1 * MiB;
/** ADMIN_MAX_BODY_BYTES of the service under test. */
const IMPORT_LIMIT = 4 * MiB;

interface Answer {
  status: number;
  body: any;
  headers: IncomingHttpHeaders;
  /** Bytes of the body written by the time the answer came. */
  sent: number;
}

/**
 * POSTs to /trpc/`path` a body declared `declared` bytes long (chunked when undefined): `prefix`,
 * then spaces (JSON whitespace) in 64 KiB writes, `sendAtMost` bytes in all, never ending it unless
 * that is the whole declared length; writing stops when the answer comes. `answer` rejects when none
 * came within `ms`: the server was waiting for the rest of the body.
 */
function upload(
  url: string,
  path: string,
  {
    declared,
    sendAtMost,
    cookie,
    prefix = '',
    ms = 5000,
  }: { declared?: number; sendAtMost: number; cookie?: string; prefix?: string; ms?: number },
): { answer: Promise<Answer>; abort(): void } {
  const { port } = new URL(url);
  let sent = 0;
  let answered = false;
  const req = request({
    host: '127.0.0.1',
    port,
    method: 'POST',
    path: `/trpc/${path}`,
    headers: {
      'content-type': 'application/json',
      origin: url,
      ...(declared !== undefined ? { 'content-length': String(declared) } : {}),
      ...(cookie ? { cookie } : {}),
    },
  });
  const answer = new Promise<Answer>((resolve, reject) => {
    const timer = setTimeout(() => {
      req.destroy();
      reject(new Error(`no answer within ${ms} ms, ${sent} bytes sent`));
    }, ms);
    req.on('response', (res) => {
      answered = true;
      const at = sent;
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => {
        clearTimeout(timer);
        req.destroy();
        resolve({ status: res.statusCode!, body: JSON.parse(text), headers: res.headers, sent: at });
      });
    });
    req.on('error', (err) => {
      if (answered) return;
      clearTimeout(timer);
      reject(err);
    });
  });
  const head = Buffer.from(prefix);
  const filler = Buffer.alloc(64 * KiB, 0x20);
  const pump = () => {
    while (!answered && !req.destroyed && sent < sendAtMost) {
      const chunk = sent < head.length ? head.subarray(sent) : filler.subarray(0, Math.min(filler.length, sendAtMost - sent));
      sent += chunk.length;
      if (!req.write(chunk)) return void req.once('drain', pump);
    }
    if (!answered && !req.destroyed && sent === declared) req.end();
  };
  pump();
  return { answer, abort: () => req.destroy() };
}

/** A whole JSON body, padded with spaces to `bytes` (fetch: sent in one go). */
function padded(input: unknown, bytes: number): string {
  const json = JSON.stringify(input);
  return json + ' '.repeat(Math.max(0, bytes - json.length));
}

describe('request body limits of the admin service (authzrev F4)', () => {
  let h: Harness;
  let adminCookie: string;
  let viewerCookie: string;
  beforeAll(async () => {
    h = await createHarness({ ADMIN_MAX_BODY_BYTES: String(IMPORT_LIMIT), ADMIN_BULK_IMPORTS_AT_ONCE: '1' });
    await h.listen();
    adminCookie = await httpLogin(h.url, 'alice', ADMIN_PASSWORD);
    viewerCookie = await httpLogin(h.url, 'victor', VIEWER_PASSWORD);
  });
  afterAll(async () => h?.[Symbol.asyncDispose]());

  const post = (path: string, body: string, cookie = adminCookie) =>
    fetch(`${h.url}/trpc/${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: h.url, cookie },
      body,
    });

  it('refuses an anonymous login declaring a large body with 413 before reading it (it read and parsed up to 32 MiB)', async () => {
    const { status, body, sent } = await upload(h.url, 'auth.login', {
      declared: 3 * MiB,
      prefix: '{"username":"',
      sendAtMost: 64 * KiB,
    }).answer;
    expect(sent).toBe(64 * KiB); // answered with 1/48 of the body sent: it was not waited for
    expect(status).toBe(413);
    expect(body.error).toEqual({
      code: 'PAYLOAD_TOO_LARGE',
      message: `request body of ${3 * MiB} bytes is over the ${CALL_LIMIT}-byte limit of every procedure but collectors.bulkImport`,
    });
    // The service goes on answering, the same client included.
    const res = await post('auth.login', JSON.stringify({ username: 'alice', password: ADMIN_PASSWORD }), '');
    expect(res.status).toBe(200);
  });

  it('stops reading a chunked body at the limit and answers 413 (no Content-Length to check first)', async () => {
    // Without a session: 64 KiB (review33 F2); signed in: the call limit.
    const { status, body } = await upload(h.url, 'auth.login', {
      prefix: '{"username":"',
      sendAtMost: 3 * MiB,
      ms: 10_000,
    }).answer;
    expect(status).toBe(413);
    expect(body.error.message).toBe(
      `request body (chunked) is over the ${64 * KiB}-byte limit of a request without a session (sign in first)`,
    );
    const signedIn = await upload(h.url, 'groups.create', {
      prefix: '{"name":"',
      sendAtMost: 3 * MiB,
      cookie: adminCookie,
      ms: 10_000,
    }).answer;
    expect(signedIn.status).toBe(413);
    expect(signedIn.body.error.message).toBe(
      `request body (chunked) is over the ${CALL_LIMIT}-byte limit of every procedure but collectors.bulkImport`,
    );
  });

  it('applies the small limit to an admin too, on every procedure but collectors.bulkImport (a batch naming it included)', async () => {
    for (const path of ['groups.create', 'collectors.bulkImport,groups.create?batch=1']) {
      const { status, body } = await upload(h.url, path, { declared: 2 * MiB, sendAtMost: 64 * KiB, cookie: adminCookie }).answer;
      expect(status, path).toBe(413);
      expect(body.error.message, path).toMatch(`over the ${CALL_LIMIT}-byte limit of every procedure but collectors.bulkImport`);
    }
  });

  it('refuses a large bulkImport body from an anonymous caller (401) or a viewer (403) before reading it', async () => {
    const anonymous = await upload(h.url, 'collectors.bulkImport', { declared: 3 * MiB, sendAtMost: 64 * KiB }).answer;
    expect(anonymous).toMatchObject({ status: 401, body: { error: { code: 'UNAUTHORIZED', message: 'sign in first' } } });
    const fake = await upload(h.url, 'collectors.bulkImport', {
      declared: 3 * MiB,
      sendAtMost: 64 * KiB,
      cookie: `pga_session=${'A'.repeat(43)}`,
    }).answer;
    expect(fake.status).toBe(401);
    const viewer = await upload(h.url, 'collectors.bulkImport', {
      declared: 3 * MiB,
      sendAtMost: 64 * KiB,
      cookie: viewerCookie,
    }).answer;
    expect(viewer).toMatchObject({ status: 403, body: { error: { code: 'FORBIDDEN' } } });
    // Chunked, and over ADMIN_MAX_BODY_BYTES: the role is what is answered, still before any body.
    for (const declared of [undefined, 100 * MiB]) {
      const res = await upload(h.url, 'collectors.bulkImport', { declared, sendAtMost: 64 * KiB, cookie: viewerCookie }).answer;
      expect(res.status, String(declared)).toBe(403);
    }
  });

  it('takes an admin bulkImport up to ADMIN_MAX_BODY_BYTES and refuses a larger one with 413 naming the setting, before reading it', async () => {
    const input = { format: 'json', content: JSON.stringify([form({ name: 'big-body' })]), dry_run: true };
    const res = await post('collectors.bulkImport', padded(input, 3 * MiB));
    expect(res.status).toBe(200);
    expect((await res.json()).result.data).toMatchObject({ dry_run: true, total: 1, errors: 0 });

    const over = await upload(h.url, 'collectors.bulkImport', {
      declared: IMPORT_LIMIT + 1,
      sendAtMost: 64 * KiB,
      cookie: adminCookie,
    }).answer;
    expect(over.status).toBe(413);
    expect(over.body.error.message).toBe(
      `request body of ${IMPORT_LIMIT + 1} bytes is over the ${IMPORT_LIMIT}-byte limit of collectors.bulkImport (ADMIN_MAX_BODY_BYTES)`,
    );
    const chunked = await upload(h.url, 'collectors.bulkImport', {
      sendAtMost: IMPORT_LIMIT + 2 * MiB,
      cookie: adminCookie,
      ms: 15_000,
    }).answer;
    expect(chunked.status).toBe(413);
  });

  it('runs at most ADMIN_BULK_IMPORTS_AT_ONCE large bulk imports: one more gets 429 with Retry-After; its slot frees when it ends', async () => {
    // An import being uploaded holds the one slot (its body half sent).
    const first = upload(h.url, 'collectors.bulkImport', { declared: 3 * MiB, sendAtMost: 64 * KiB, cookie: adminCookie });
    await new Promise((r) => setTimeout(r, 300));
    const second = await upload(h.url, 'collectors.bulkImport', { declared: 2 * MiB, sendAtMost: 64 * KiB, cookie: adminCookie })
      .answer;
    expect(second.status).toBe(429);
    expect(second.headers['retry-after']).toBe('5');
    expect(second.body.error.message).toMatch(/1 bulk imports are running already \(ADMIN_BULK_IMPORTS_AT_ONCE\)/);
    // A small import needs no slot.
    const small = await post(
      'collectors.bulkImport',
      JSON.stringify({ format: 'json', content: JSON.stringify([form({ name: 'small' })]), dry_run: true }),
    );
    expect(small.status).toBe(200);
    // The first client goes away: its slot is free again.
    first.abort();
    await expect(first.answer).rejects.toThrow();
    const input = { format: 'json', content: JSON.stringify([form({ name: 'after' })]), dry_run: true };
    let status = 0;
    for (let i = 0; i < 50 && status !== 200; i++) {
      status = (await post('collectors.bulkImport', padded(input, 2 * MiB))).status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 100));
    }
    expect(status).toBe(200);
  });

  it('fits the largest legitimate call input in a full batch: ten registrations with 64 KiB certificates', async () => {
    const cert = (() => {
      const begin = '-----BEGIN CERTIFICATE-----\n';
      const end = '-----END CERTIFICATE-----';
      let lines = '';
      while (begin.length + lines.length + 65 + end.length <= 65536) lines += `${'A'.repeat(64)}\n`;
      return begin + lines + 'A'.repeat(65536 - begin.length - lines.length - end.length - 1) + '\n' + end;
    })();
    expect(cert).toHaveLength(65536);
    const label = 'a'.repeat(63);
    const call = (i: number) =>
      form({
        name: `max-input-${i}`,
        group: undefined,
        host: `${label}.${label}.${label}.${'b'.repeat(61)}`,
        database: 'd'.repeat(255),
        username: 'u'.repeat(255),
        password: '"'.repeat(512),
        ssl_mode: 'verify-full',
        ssl_certificate: cert,
        description: '\u0001'.repeat(1000), // 6 bytes each in JSON
        tags: Array.from({ length: 32 }, (_, t) => `${t}`.padEnd(64, 't')),
      });
    const body = JSON.stringify(Object.fromEntries(Array.from({ length: 10 }, (_, i) => [String(i), call(i)])));
    expect(body.length).toBeLessThan(CALL_LIMIT);
    const res = await post(`${Array.from({ length: 10 }, () => 'collectors.register').join(',')}?batch=1`, body);
    const answers = await res.json();
    expect(res.status).toBe(200);
    expect(answers.map((a: any) => a.result?.data?.collector?.has_ssl_certificate)).toEqual(Array(10).fill(true));
  });
});
