/**
 * The design document's ingest approach, built fairly, as the baseline the pipeline must beat:
 * a node:http handler that verifies the collector's bearer token (verified tokens cached, like the
 * edge does) and stores each push with ONE INSERT statement, answering after it commits. One
 * process per core (node:cluster) sharing a PostgreSQL pool sized for the machine.
 *
 * Env: PORT, DATABASE_URL, POOL_MAX (total connections; default 4 × cores), PROCESSES (default
 * cores), JWT_SECRET, JWT_ISSUER, JWT_AUDIENCE.
 */
import cluster from 'node:cluster';
import { randomUUID, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import os from 'node:os';
import { gunzipSync } from 'node:zlib';
import pg from 'pg';
import { createCollectorTokens } from '@pga/tokens';

const cores = os.availableParallelism();
const processes = Number(process.env.PROCESSES ?? cores);
const poolMax = Number(process.env.POOL_MAX ?? 4 * cores);

// One statement per push: the envelope's elements become rows inside PostgreSQL (jsonb keeps
// 64-bit integers exact), a flat body becomes one row.
const INSERT_SQL = `INSERT INTO collector_metrics
  (collector_id, push_id, metric_type, database_name, metric_data, received_at, record_count, checksum)
SELECT $1, $2, COALESCE(e->>'type', 'custom'), e->>'database', e, now(), 1, $3
  FROM jsonb_array_elements(CASE WHEN jsonb_typeof($4::jsonb->'metrics') = 'array'
                                 THEN $4::jsonb->'metrics' ELSE jsonb_build_array($4::jsonb) END) AS e`;

if (cluster.isPrimary && processes > 1) {
  for (let i = 0; i < processes; i++) cluster.fork();
  process.on('SIGTERM', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGTERM');
    setTimeout(() => process.exit(0), 2000).unref();
  });
  cluster.on('exit', () => {
    if (Object.keys(cluster.workers ?? {}).length === 0) process.exit(0);
  });
} else {
  serve();
}

function serve(): void {
  const pool = new pg.Pool({
    connectionString: process.env.DATABASE_URL,
    max: Math.max(1, Math.round(poolMax / processes)),
    application_name: 'bench-design-baseline',
  });
  pool.on('error', () => undefined);
  const tokens = createCollectorTokens({
    secret: process.env.JWT_SECRET!,
    issuer: process.env.JWT_ISSUER ?? 'pganalytics-central',
    audience: process.env.JWT_AUDIENCE ?? 'pganalytics-collectors',
  });
  const verified = new Map<string, string>();

  const send = (res: ServerResponse, status: number, body: unknown) => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, raw: Buffer) => {
    if (req.url === '/healthz') return send(res, 200, { status: 'ok' });
    if (req.method !== 'POST' || req.url !== '/api/v1/metrics/push') return send(res, 404, { error: { code: 'NOT_FOUND' } });
    const token = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    if (!token) return send(res, 401, { error: { code: 'UNAUTHORIZED' } });
    let collectorId = verified.get(token);
    if (!collectorId) {
      try {
        collectorId = (await tokens.verify(token)).sub;
        verified.set(token, collectorId);
      } catch {
        return send(res, 401, { error: { code: 'UNAUTHORIZED' } });
      }
    }
    const body = req.headers['content-encoding'] === 'gzip' && raw[0] === 0x1f && raw[1] === 0x8b ? gunzipSync(raw) : raw;
    const text = body.toString('utf8');
    try {
      JSON.parse(text);
    } catch {
      return send(res, 400, { error: { code: 'INVALID_JSON' } });
    }
    const pushId = randomUUID();
    const checksum = createHash('sha256').update(body).digest('hex');
    const result = await pool.query(INSERT_SQL, [collectorId, pushId, checksum, text]);
    send(res, 200, { status: 'accepted', push_id: pushId, records: result.rowCount, duplicate: false });
  };

  const server = createServer({ keepAliveTimeout: 120_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      handle(req, res, Buffer.concat(chunks)).catch(() => send(res, 503, { error: { code: 'UNAVAILABLE' } }));
    });
  });
  server.listen(Number(process.env.PORT), '127.0.0.1');
  process.on('SIGTERM', () => server.close(() => void pool.end().then(() => process.exit(0))));
}
