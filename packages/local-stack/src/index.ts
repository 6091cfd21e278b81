export { startPostgres, type PostgresHandle, type StartPostgresOptions } from './postgres';
export { startRedis, type RedisHandle, type StartRedisOptions } from './redis';
export { exitedAtStart, freePort, PortInUseError, saysPortInUse, startOnFreePort } from './free-port';
export { findExecutable, POSTGRES_BIN_DIRS } from './find-executable';
export { GiveUp, waitFor } from './wait-for';
export { outputTail, spawnServer, startTogether, stopChild, type ServerProcessOptions } from './child';
export { alive, processTable, processTree, readProc, type ProcEntry } from './proc';
export { answeringPid, freshGet, waitForProcesses } from './fresh-get';
