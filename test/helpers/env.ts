/** What scripts/test.ts started for this run (see its PGA_TEST_* variables). */
function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run the tests with \`npm test\`, which starts PostgreSQL and Redis`);
  return value;
}

export const testEnv = {
  /** Superuser URL of the test cluster's `postgres` database. */
  get pgUrl() {
    return required('PGA_TEST_PG_URL');
  },
  get pgPort() {
    return Number(required('PGA_TEST_PG_PORT'));
  },
  /** A database with every migration applied, cloned per suite. */
  get templateDb() {
    return required('PGA_TEST_TEMPLATE_DB');
  },
  get redisUrl() {
    return required('PGA_TEST_REDIS_URL');
  },
  /** Scratch folder of this test run (removed afterwards). */
  get dataDir() {
    return required('PGA_TEST_DATA_DIR');
  },
};
