import type { Scenario } from '../harness/scenario';
import { adminApi } from './admin-api/admin-api';
import { bulkImport } from './bulk-import/bulk-import';
import { collector } from './collector/collector';
import { connections } from './connections/connections';
import { copyLimit } from './copy-limit/copy-limit';
import { designBaseline } from './design-baseline/design-baseline';
import { edgeCeiling } from './edge-ceiling/edge-ceiling';
import { ingestE2e } from './ingest-e2e/ingest-e2e';
import { ingestEdge } from './ingest-edge/ingest-edge';
import { largePushes } from './large-pushes/large-pushes';
import { pgStall } from './pg-stall/pg-stall';

/** Every scenario, in the order the suite runs them. */
export const SCENARIOS: Scenario[] = [
  copyLimit,
  designBaseline,
  edgeCeiling,
  ingestEdge,
  ingestE2e,
  pgStall,
  largePushes,
  connections,
  adminApi,
  bulkImport,
  collector,
];
