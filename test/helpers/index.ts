export { testEnv } from './env';
export { createTestDatabase, uniquePrefix, urlFor, type TestDatabase } from './database';
export { launchBrowser } from './browser';
export { startStack, type RunningStack } from './stack';
export { capturingLogger, type LogLine } from './log-lines';
export { optionsDroppingProxy, type OptionsDroppingProxy } from './options-dropping-proxy';
export { startPgBouncer, pgbouncerBinary, type PgBouncer } from './pgbouncer';
