import type { LoadedConfig } from './load-collector-config';

/** A TOML basic string: JSON's escapes are valid TOML, except DEL, which TOML wants escaped too. */
function str(value: string): string {
  return JSON.stringify(value).replaceAll('\x7f', '\\u007f');
}

/**
 * The pganalytics-v3 collector's config file (`[collector]`, `[backend]`, `[postgres]`), filled
 * from the collector's row. Numbers are written as TOML integers.
 */
export function toV3Toml(collectorId: string, { config, name, hostname }: LoadedConfig, centralApiUrl: string): string {
  const t = config.target;
  const lines = [
    `# pgAnalytics Central configuration for collector ${collectorId} (config_version ${config.config_version})`,
    '',
    '[collector]',
    `id = ${str(collectorId)}`,
    `hostname = ${str(hostname ?? name)}`,
    `interval = ${config.collection_interval}`,
    `push_interval = ${config.collection_interval}`,
    'config_pull_interval = 300',
    `enabled = ${config.enabled}`,
    `config_version = ${config.config_version}`,
    `query_limit = ${config.query_limit}`,
    '',
    '[backend]',
    `url = ${str(centralApiUrl)}`,
    '',
    '[postgres]',
    `host = ${str(t.host)}`,
    `port = ${t.port}`,
    `user = ${str(t.username)}`,
    `password = ${str(t.password)}`,
    `database = ${str(t.database)}`,
    ...(t.ssl_mode ? [`sslmode = ${str(t.ssl_mode)}`] : []),
    '',
  ];
  return lines.join('\n');
}
