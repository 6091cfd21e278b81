import { describe, expect, it } from 'vitest';
import type { z } from 'zod';
import { appRouter } from '../routers/app-router';
import { toCollector } from './collector-row';

/** A row as COLLECTOR_COLUMNS reads it. */
const row = (overrides: Record<string, unknown> = {}) => ({
  id: '6f1c2a4e-8b1d-4c3e-9a2f-0123456789ab',
  name: 'prod-1',
  type: 'postgresql',
  environment: 'production',
  group_id: null,
  description: null,
  host: 'db.example',
  port: 5432,
  database: 'app',
  username: 'monitor',
  ssl_mode: 'prefer',
  has_ssl_certificate: false,
  collection_interval: 60,
  query_limit: 100,
  enabled: true,
  tags: [],
  config_version: 1,
  status: 'pending',
  heartbeat_alive: false,
  data_fresh: false,
  last_heartbeat: null,
  last_metric_at: null,
  last_error: null,
  error_count: '0',
  success_count: '0',
  metrics_collected: '0',
  last_collection_count: null,
  avg_collection_time_ms: null,
  max_collection_time_ms: null,
  uptime_percentage: '0',
  agent_hostname: null,
  agent_version: null,
  registered_by: null,
  registered_by_name: null,
  enrollment_secret_id: null,
  registered_at: new Date('2026-12-07T10:00:00Z'),
  last_modified_at: null,
  deleted_at: null,
  jwt_token_expires_at: null,
  jwt_token_rotated_at: null,
  ...overrides,
});

const outputOf = (path: string) =>
  (appRouter._def.procedures as unknown as Record<string, { _def: { output?: z.ZodType } }>)[path]?._def.output;

describe('toCollector', () => {
  // toCollector does not parse its result: the procedures' output schemas check every collector.
  it('every procedure answering with collectors checks them with its output schema', () => {
    const bad = toCollector(row({ status: 'exploded' }));
    const good = toCollector(row());
    const credentials = {
      token: 't',
      token_expires_at: '2027-12-07T10:00:00.000Z',
      setup: { COLLECTOR_JWT_TOKEN: 't', COLLECTOR_ID: row().id, CENTRAL_API_URL: 'http://127.0.0.1:8080' },
      instructions: '',
    };
    const answers: Record<string, (c: unknown) => unknown> = {
      'collectors.list': (c) => ({ items: [c], total: 1, page: 1, page_size: 50 }),
      'collectors.get': (c) => ({ ...(c as object), dashboards: [], recent_commands: [] }),
      'collectors.update': (c) => c,
      'collectors.enable': (c) => c,
      'collectors.disable': (c) => c,
      'collectors.register': (c) => ({ ...credentials, collector: c, connection_test: null }),
      'collectors.restore': (c) => ({ ...credentials, collector: c }),
    };
    for (const [path, answer] of Object.entries(answers)) {
      const output = outputOf(path);
      expect(output, path).toBeDefined();
      expect(output!.safeParse(answer(bad)).success, path).toBe(false);
      expect(output!.safeParse(answer(good)).error, path).toBeUndefined();
    }
  });

  it('maps a NULL uptime (a collector never heard from) to null, not 0', () => {
    expect(toCollector(row({ uptime_percentage: null })).uptime_percentage).toBeNull();
    expect(toCollector(row({ uptime_percentage: '0.00' })).uptime_percentage).toBe(0);
  });

  it('maps numbers, dates, the group and the registering user', () => {
    const c = toCollector(
      row({
        group_id: '0b7c7d3e-1111-4c3e-9a2f-0123456789ab',
        group_name: 'AWS RDS',
        group_color: '#ff9900',
        error_count: '3',
        uptime_percentage: '99.50',
        registered_by: '1c2d3e4f-2222-4c3e-9a2f-0123456789ab',
        registered_by_name: 'admin',
      }),
    );
    expect(c).toMatchObject({
      group: { id: '0b7c7d3e-1111-4c3e-9a2f-0123456789ab', name: 'AWS RDS', color: '#ff9900' },
      error_count: 3,
      uptime_percentage: 99.5,
      registered_by: { id: '1c2d3e4f-2222-4c3e-9a2f-0123456789ab', username: 'admin' },
      registered_at: '2026-12-07T10:00:00.000Z',
      enrolled: false,
    });
  });
});
