export { createEdge, type Edge, type CreateEdgeOptions } from './create-edge';
export { readEdgeConfig, openMetricsWarning, EdgeConfigSchema, type EdgeConfig } from './config';
export { scanPushJson, type PushScan } from './push/scan-push-json';
export { derivePushId } from './push/push-id';
