import { freePort, waitFor } from '@pga/local-stack';
import { createEdge, readEdgeConfig, type Edge } from '@pga/ingest-edge';
import { createLogger } from '@pga/logger';
import { createWriter, readWriterConfig, type Writer } from '@pga/writer';
import type { Harness } from './harness';

/**
 * An in-process edge (one process) and writer on the admin harness's database, Redis, prefix and
 * secrets, the admin service's live feed subscribed: the whole pipeline, real. `writerEnv` adds to
 * the writer's settings (timers). Resolves once the writer has started and the edge answers /readyz.
 */
export async function startPipeline(
  h: Harness,
  name: string,
  writerEnv: Record<string, string>,
): Promise<{ edge: Edge; edgeUrl: string; writer: Writer; stop(): Promise<void> }> {
  await h.service.deps.liveFeed.ready();
  const c = h.service.deps.config;
  const shared = {
    DATABASE_URL: c.DATABASE_URL,
    REDIS_URL: c.REDIS_URL,
    REDIS_KEY_PREFIX: c.REDIS_KEY_PREFIX,
    JWT_SECRET: c.JWT_SECRET,
    ENCRYPTION_KEY: c.ENCRYPTION_KEY,
    LOG_LEVEL: 'silent',
  };
  const silent = createLogger({ name, level: 'silent', pretty: false });
  const edge = await createEdge({
    config: readEdgeConfig({ ...shared, INGEST_PORT: '0', INGEST_HOST: '127.0.0.1', EDGE_PROCESSES: '1' }),
    logger: silent,
  });
  const edgeUrl = `http://127.0.0.1:${edge.port}`;
  const writer = createWriter({
    config: readWriterConfig({ ...shared, WRITER_PORT: String(await freePort()), WRITER_HOST: '127.0.0.1', ...writerEnv }),
    logger: silent,
  });
  await writer.start();
  await waitFor('edge /readyz', async () => (await fetch(`${edgeUrl}/readyz`)).status === 200, 10_000);
  return {
    edge,
    edgeUrl,
    writer,
    async stop() {
      await writer.stop().catch(() => undefined);
      await edge.drain().catch(() => undefined);
    },
  };
}
