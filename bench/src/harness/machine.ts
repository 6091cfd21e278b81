import os from 'node:os';
import { findExecutable, POSTGRES_BIN_DIRS } from '@pga/local-stack';
import type { MachineInfo } from './model';
import { REPO_ROOT, versionOf } from './stack';

/** What the figures were measured on; taken before the bench starts anything. */
export function describeMachine(): MachineInfo {
  const cpus = os.cpus();
  const postgres = findExecutable('postgres', POSTGRES_BIN_DIRS);
  const redis = findExecutable('redis-server');
  return {
    hostname: os.hostname(),
    cpuModel: cpus[0]?.model.trim() ?? 'unknown',
    cores: os.availableParallelism(),
    memoryMiB: Math.round(os.totalmem() / 1024 / 1024),
    kernel: `${os.type()} ${os.release()}`,
    node: process.version,
    postgres: postgres ? versionOf(postgres) : 'not found',
    redis: redis ? versionOf(redis, ['--version']).replace(/ sha=.*$/, '') : 'not found',
    gitCommit: versionOf('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD']),
    loadBefore: os.loadavg().map((v) => Math.round(v * 100) / 100),
  };
}
