export { loadConfig, configOrExit, ConfigError } from './load-config';
export { port, url, bool, int, logLevel, commonSchema, jwtSchema, encryptionSchema } from './fields';
export { portAvailable } from './port-available';
