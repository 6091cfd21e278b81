/**
 * Every Redis key and channel the processes share, in one place. `prefix` comes from
 * REDIS_KEY_PREFIX (default "pga"); tests give each suite its own prefix.
 */
export function redisKeys(prefix = 'pga') {
  return {
    /** BullMQ `prefix` option: queues live under `${prefix}:bull:<queue>`. */
    bullPrefix: `${prefix}:bull`,
    /** BullMQ queue name of packed pushes (edge → writer). */
    pushQueue: 'pushes',
    /** BullMQ queue name of scheduled maintenance (partitions, retention, inactivity sweep). */
    maintenanceQueue: 'maintenance',

    /** SET of revoked token jtis (revocation, rotation). */
    deniedJtis: `${prefix}:deny:jti`,
    /** SET of collector ids whose every token is refused (disabled, deleted). */
    deniedCollectors: `${prefix}:deny:collector`,
    /**
     * SET of the denied collectors that are deleted (their tokens answer 401 rather than 403
     * COLLECTOR_DISABLED), so an edge that reloads the deny state still tells the two apart.
     */
    deletedCollectors: `${prefix}:deny:deleted`,
    /**
     * HASH collector id → when PostgreSQL made its disable or delete (epoch µs of the row's
     * last_modified_at / deleted_at: `clock_timestamp()` under the row lock, so later than any change
     * committed to the row before, PostgreSQL's clock), written in the MULTI that adds it to
     * `deniedCollectors` and removed by the one that takes it out (enable, restore of an enabled
     * one). The admin's repair takes a collector out of the denied set only when PostgreSQL holds an
     * enable or restore (audit log) later than this: a PostgreSQL restored from a backup older than
     * the disable says "enabled" too, and must not admit it again.
     */
    deniedAt: `${prefix}:deny:at`,
    /** Counter bumped on every change to the two sets above. */
    denyVersion: `${prefix}:deny:version`,
    /** Pub/sub channel of CollectorChange messages (admin → every edge process). */
    changesChannel: `${prefix}:collector-changes`,
    /** Pub/sub channel of collector status/counter updates (writer → admin live feed). */
    statusChannel: `${prefix}:collector-status`,
    /**
     * Pub/sub channel of ended admin sessions, `{"user_id"}` or `{"session_hash"}` (admin → every
     * admin process): each ends the live feeds it serves for them (logout, disable, password reset).
     */
    sessionsEndedChannel: `${prefix}:admin-sessions-ended`,

    /**
     * SET of every collector id PostgreSQL committed (registration, bulk import, enrollment at an
     * edge), added after the commit — never before: the admin's repair denies an id here that
     * PostgreSQL lacks (PostgreSQL restored from a backup older than its registration), and an id
     * added before its commit would be denied by a repair that ran meanwhile. The repair also adds
     * every id PostgreSQL holds (an upgrade from before this set, a Redis that lost its data or went
     * back to an older copy). Never shrinks: collectors are soft-deleted, their rows stay.
     */
    knownCollectors: `${prefix}:collectors:known`,
    /**
     * STRING the installation's id (PostgreSQL's `installation` table, migration 0044), copied here
     * by the admin service when Redis holds none. The repair of `knownCollectors` acts only while
     * it equals PostgreSQL's: another id is a wrong DATABASE_URL, another installation on this
     * prefix, or a database re-created from nothing (`npm run adopt-installation` adopts its id).
     */
    installation: `${prefix}:installation`,
    /** HASH collector id → config_version (admin writes; edge answers heartbeats from it). */
    configVersions: `${prefix}:config-version`,
    /**
     * LIST of pending commands `{"id","action","expires_at"}` (epoch ms) for one collector (admin
     * RPUSH + PEXPIREAT to the newest entry's expiry; the edge drains it and skips expired entries).
     */
    commands: (collectorId: string) => `${prefix}:commands:${collectorId}`,
    /** HASH command id → ISO time delivered (edge writes, writer flushes to PostgreSQL). */
    deliveredCommands: `${prefix}:commands:delivered`,

    /**
     * HASH of one collector's latest heartbeat: last_seen, status, metrics_count, last_error,
     * collection_time_ms, version, and `collection_times: reports` when the edge also added its collection
     * time to `heartbeatCollectionTimes` (an older edge does not: the writer then takes collection_time_ms).
     */
    heartbeat: (collectorId: string) => `${prefix}:hb:${collectorId}`,
    /** SET of collector ids with a heartbeat not yet flushed to PostgreSQL. */
    heartbeatDirty: `${prefix}:hb:dirty`,
    /**
     * ZSET of one collector's heartbeat minutes not yet flushed, member `<minute epoch ms>:<active|error>`
     * scored by the minute (edge ZADDs in the heartbeat's MULTI and keeps the newest 1,440 entries;
     * the writer reads the oldest in bounded slices and ZREMs them after COMMIT): the heartbeat
     * history behind uptime. The hash above keeps only the latest heartbeat, so minutes the writer did
     * not flush one by one (a writer down or restarting) were lost from the history.
     */
    heartbeatMinutes: (collectorId: string) => `${prefix}:hb:mins:${collectorId}`,
    /**
     * ZSET of one collector's collection times not yet flushed, one member per report,
     * `<heartbeat epoch ms>:<collection ms>` scored by the heartbeat's time (its hash's `last_seen`).
     * The edge ZADDs it in the heartbeat's MULTI (keeping the newest 200) and marks the hash
     * `collection_times: reports`; the writer applies, with a hash, the reports newer than the
     * collector's last heartbeat applied and not newer than that hash (so none twice), then removes the
     * reports up to the hash's time after COMMIT. The hash keeps only the latest heartbeat, so a
     * collection time reported by a heartbeat replaced before the flush was lost from
     * avg/max_collection_time_ms. (A new key: `hb:ct:{id}` held running figures `n`/`sum`/`max` in
     * this round's earlier, unreleased format, which nothing reads; it expires.)
     */
    heartbeatCollectionTimes: (collectorId: string) => `${prefix}:hb:cts:${collectorId}`,

    /**
     * STRING idempotency marker of one push, 24 h TTL (the edge's claim script reads the collector
     * id, 36 characters, after `<prefix>:idem:` to find its push quota counter): `b:<batch id>:<records>`, the batch whose
     * state says whether the push is stored (the edge's push/idempotency-scripts.ts). The batch id is
     * `<12 base64url characters, random per process>:<counter>` (an older edge's: a UUID, not a
     * counter), so that the value stays within Redis's 44-byte embedded strings.
     */
    idempotency: (collectorId: string, key: string) => `${prefix}:idem:${collectorId}:${key}`,
    /**
     * STRING counter of one collector's new pushes (idempotency markers set) in its current push
     * quota window (PUSH_QUOTA_PER_HOUR), expiring at the window's end: INCR'd by the edge's claim
     * script, across every edge process.
     */
    pushQuota: (collectorId: string) => `${prefix}:quota:push:${collectorId}`,
    /** Prefix of `idempotencyBatch` keys (the claim script builds them from a marker's batch id). */
    idempotencyBatchPrefix: `${prefix}:idem-batch:`,
    /** STRING state of one packed batch: `p` (pending, short TTL) until Redis holds its job, then `d` (24 h). */
    idempotencyBatch: (batchId: string) => `${prefix}:idem-batch:${batchId}`,

    /**
     * HASH holding the body of one large push (LARGE_PUSH_BYTES or more) in 1 MiB pieces, fields
     * "0", "1", …, for the push job `jobId` that refers to it (`body_ref`): written by the edge piece
     * by piece (one 64 MiB job argument held Redis for seconds), read by the writer, deleted once the
     * job completed.
     */
    pushBlob: (jobId: string) => `${prefix}:push-blob:${jobId}`,
    /**
     * ZSET of `pushBlob` keys by the time (epoch ms) the edge began writing them: the writer's sweep
     * deletes the ones whose job is gone (completed by a writer that died before deleting the blob,
     * a dead letter past its age, an add that never happened).
     */
    pushBlobs: `${prefix}:push-blobs`,

    /**
     * STRING a service SETs (10 s TTL) while Redis refuses its commands (out of memory, read-only
     * replica, failed save): the first that succeeds ends the outage in its log.
     */
    writeProbe: `${prefix}:write-probe`,
    /**
     * STRING random id set by the first process that finds none (`dataEpoch`): another id, or none,
     * later means Redis lost its data meanwhile (FLUSHALL, a failover to an unsynced replica). Next to
     * it each process keeps a mark of its own (`<dataEpoch>:mark:<random id>`, 1 h TTL) that tells it
     * when Redis went back to an older copy of the same data (`dataEpoch`).
     */
    dataEpoch: `${prefix}:data-epoch`,
  };
}

export type RedisKeys = ReturnType<typeof redisKeys>;
