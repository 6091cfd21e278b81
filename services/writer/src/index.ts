export { createWriter, type Writer } from './create-writer';
export { openMetricsWarning, readWriterConfig, WriterConfigSchema, type WriterConfig } from './config';
export { splitPush, PushShapeError, type MetricSlice, type SplitPush } from './split-push';
export { type CollectorStatusMessage } from './status-publisher';
