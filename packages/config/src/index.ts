export { loadConfig, configOrExit, ConfigError } from './load-config';
export {
  port,
  listenHost,
  url,
  postgresUrl,
  SSL_MODES,
  bool,
  int,
  optionalInt,
  logLevel,
  commonSchema,
  jwtSchema,
  encryptionSchema,
} from './fields';
export { portAvailable } from './port-available';
export {
  trustProxySchema,
  forwardedEntry,
  clientAddress,
  normalizeAddress,
  limitKey,
  unreadableForwardedWarning,
} from './trusted-proxies';
export {
  metricsTokenSchema,
  metricsAuth,
  isLoopbackHost,
  openMetricsWarningFor,
  METRICS_TOKEN_MIN_LENGTH,
  type MetricsAuth,
  type MetricsRefusal,
} from './metrics-token';
