import { readDatabaseDenyState, withTransaction } from '@pga/db';
import { recordKnownCollectors } from '@pga/redis-keys';
import type { Deps } from '../deps';
import { DENIED_AT_US, publishChange } from './after-commit';
import { ADOPT_COMMAND, readInstallationId } from './installation';

/**
 * Makes sure the edges' deny sets hold everything PostgreSQL says is refused: every revoked token
 * not more than an hour past its expiry (DENIED_AFTER_EXPIRY; the writer's retention prunes older
 * ones) and every disabled or deleted collector (the deleted ones also in the deleted
 * set), as `readDatabaseDenyState` reads them (the edges union the same read with Redis's at every
 * load). Runs at start, whenever the Redis connection becomes ready again, when Redis is found
 * emptied (`dataEpoch`) and every 2 s after a publish Redis refused until a run succeeds
 * (create-admin-service.ts), so a publish lost to a Redis outage (or a Redis that lost its data) is
 * repaired. Each repair re-reads the collector under its row lock and publishes before releasing it,
 * so it cannot re-deny a collector that an admin enables at the same moment (enable publishes its
 * removal after its own commit, i.e. after this lock is released).
 *
 * It also takes out what PostgreSQL no longer refuses: a collector in the denied (or deleted) set
 * that is enabled (or not deleted) there, under the same row lock — an `enabled`/`restored` whose
 * publish was lost (Redis refusing writes) left it refused by every edge for good, since an edge's
 * reload takes the union of Redis's sets and PostgreSQL's. (A collector whose row is gone stays.)
 * But only when PostgreSQL holds that enable or restore: an audit entry `collector.enabled` or
 * `collector.restored` later than the deny time Redis recorded beside the set (`keys.deniedAt`,
 * the time PostgreSQL made the disable or delete, under the row lock; the audit entries' times are
 * taken the same way, `clock_timestamp()`, so an enable that waited for a disable's lock is later). PostgreSQL restored from a backup older than
 * a disable or delete says "enabled / not deleted" too, without such an entry: that collector stays
 * refused, and each run says so in an error line naming it (the admin enables it again to admit it,
 * set-enabled.ts). A denied entry without a recorded time (written before the time was recorded, or
 * by hand) is kept likewise: nothing tells a lost enable from a lost disable there. Denied entries
 * PostgreSQL also refuses get its time recorded when they lack one.
 *
 * Last, collectors Redis knows and PostgreSQL lacks are refused as deleted (`reconcileKnownCollectors`).
 *
 * Returns the number of collectors it had to re-publish; throws if Redis refused any of them
 * (the admin service then tries again, create-admin-service.ts).
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export async function reconcileDenyState(deps: Deps): Promise<number> {
  const { pool, redis, keys } = deps;
  const [{ tokens, collectors: refused }, deniedJtis, deniedCollectors, deletedCollectors, deniedAt] = await Promise.all([
    readDatabaseDenyState(pool),
    redis.smembers(keys.deniedJtis).then((m) => new Set(m)),
    redis.smembers(keys.deniedCollectors).then((m) => new Set(m)),
    redis.smembers(keys.deletedCollectors).then((m) => new Set(m)),
    redis.hgetall(keys.deniedAt),
  ]);
  const missingJtis = new Map(tokens.map((t) => [t.collector_id, t.jtis.filter((j) => !deniedJtis.has(j))]));
  // Missing from the denied set, or deleted but not marked so (the edges would answer 403, not 401).
  const missingCollectors = new Map(
    refused
      .filter((c) => !deniedCollectors.has(c.id) || (c.deleted && !deletedCollectors.has(c.id)))
      .map((c) => [c.id, c.deleted]),
  );
  const ids = new Set([...[...missingJtis].filter(([, j]) => j.length).map(([id]) => id), ...missingCollectors.keys()]);
  // In Redis's sets but not refused by PostgreSQL (enabled, or restored): an allow that was lost.
  const refusedIds = new Map(refused.map((c) => [c.id, c.deleted]));
  // Only collector ids: a stray member (written by hand) would fail the row lookup and every run.
  const stale = new Set(
    [...deniedCollectors, ...deletedCollectors].filter(
      (id) => UUID.test(id) && (!refusedIds.has(id) || (deletedCollectors.has(id) && !refusedIds.get(id))),
    ),
  );
  let lost = 0;
  let published = 0;
  /** Enabled (or not deleted) in PostgreSQL, yet no allow there is later than Redis's deny. */
  const kept: { id: string; denied_at: string | null }[] = [];
  for (const id of new Set([...ids, ...stale])) {
    // Redis refusing writes: the next run tries again, rather than each id holding its row lock
    // through three refused publishes.
    if (lost > 0) break;
    await withTransaction(pool, async (db) => {
      const { rows } = await db.query<{ refused: boolean; deleted: boolean; denied_at_us: string }>(
        `SELECT (NOT enabled OR deleted_at IS NOT NULL) AS refused, deleted_at IS NOT NULL AS deleted, ${DENIED_AT_US}
           FROM collectors WHERE id = $1 FOR UPDATE`,
        [id],
      );
      const state = rows[0];
      if (!state) return;
      const jtis = (missingJtis.get(id) ?? []).filter(Boolean);
      const withJtis = jtis.length ? { jtis } : {};
      // Taking it out of the denied set (or of the deleted set while denied) needs an allow in
      // PostgreSQL later than the deny Redis recorded (read under the lock: committed before it).
      const allowed = async (): Promise<boolean> => {
        if (!deniedCollectors.has(id)) return true;
        const at = deniedAt[id];
        if (at === undefined || !/^\d+$/.test(at)) return false;
        const { rows: allows } = await db.query(
          `SELECT 1 FROM collector_audit_log
            WHERE collector_id = $1 AND action IN ('collector.enabled', 'collector.restored')
              AND (extract(epoch FROM created_at) * 1000000)::bigint > $2::bigint
            LIMIT 1`,
          [id, at],
        );
        return allows.length > 0;
      };
      let change: Parameters<typeof publishChange>[1] | undefined;
      if (ids.has(id) && state.refused)
        change = {
          collector_id: id,
          kind: state.deleted ? 'deleted' : 'disabled',
          ...withJtis,
          denyCollector: true,
          deniedAtUs: state.denied_at_us,
        };
      else if (stale.has(id) && !(await allowed())) {
        kept.push({ id, denied_at: deniedAt[id] ?? null });
        if (jtis.length > 0) change = { collector_id: id, kind: 'revoked', jtis };
      } else if (stale.has(id) && !state.deleted && deletedCollectors.has(id))
        // Restored: out of the deleted set, and out of the denied one too if it is enabled.
        change = { collector_id: id, kind: 'restored', ...withJtis, ...(state.refused ? {} : { allowCollector: true }) };
      else if (stale.has(id) && !state.refused) change = { collector_id: id, kind: 'enabled', ...withJtis, allowCollector: true };
      else if (jtis.length > 0) change = { collector_id: id, kind: 'revoked', jtis };
      if (!change) return;
      if (await publishChange(deps, change, { quiet: true })) published++;
      else lost++;
    });
  }
  if (published) deps.logger.warn({ collectors: published }, 'deny state was missing or stale entries; re-published them');
  if (kept.length)
    deps.logger.error(
      {
        collectors: kept.length,
        ids: kept.slice(0, 20).map((k) => k.id),
        denied_at: kept.slice(0, 20).map((k) => (k.denied_at ? new Date(Number(k.denied_at) / 1000).toISOString() : null)),
      },
      'PostgreSQL says enabled but Redis holds a later disable: PostgreSQL restored from a backup? ' +
        're-apply (disable or delete again) or enable again; these collectors stay refused until then',
    );
  if (lost) throw new Error('a collector change could not be published to Redis');
  const denied = await reconcileKnownCollectors(deps);
  await recordMissingDenyTimes(deps, refused, deniedCollectors, deniedAt);
  return published + denied;
}

/**
 * A collector registered after the backup PostgreSQL was restored from has no row there, yet its
 * token still verified (the edges refuse what the deny state lists, not what PostgreSQL lacks): its
 * pushes were accepted and stored without a collector, and no admin could see or revoke it. Every
 * registration adds its id to `keys.knownCollectors` once it has committed (register, bulk import,
 * enrollment at an edge), so an id Redis knows and PostgreSQL lacks was registered in a history
 * PostgreSQL no longer holds: it is refused as a deleted collector is (added to the denied and
 * deleted sets with the change-feed publish, so every edge answers its token 401 within a second,
 * and keeps doing so at each reload, which unions Redis's sets with PostgreSQL's), with an error
 * naming it. Its registration is undone as the restore undid every other admin action since the
 * backup; the collector registers again (a new id and token). Said once, when it is denied: an id
 * already in both sets is left as it is.
 *
 * Redis is read first: an id is added only after its row committed, so an id in that read is in the
 * PostgreSQL read that follows unless PostgreSQL went back — a registration racing the repair is
 * in both reads, or in PostgreSQL's alone. Every id PostgreSQL holds and Redis lacks is added (the
 * set did not exist before this version; Redis lost its data or went back to an older copy; an
 * edge could not write it): an id in neither set is never denied, so an empty set denies nothing.
 * Collectors are soft-deleted (their rows stay), so no id leaves PostgreSQL otherwise.
 *
 * Only while PostgreSQL is this installation's (installation.ts): when Redis's installation id is
 * not PostgreSQL's — a wrong DATABASE_URL, another installation on the same Redis prefix, a database
 * re-created from nothing — nothing is denied or added, and each run logs an error instead (the
 * operator adopts PostgreSQL's id when it is the right one, `npm run adopt-installation`). Before,
 * the only guard was "PostgreSQL holds none of the ids Redis knows", and one collector registered in
 * the wrong database lifted it: the next run refused the whole fleet as deleted, and each collector
 * had to be enabled by hand once the right database was back. A restore from this installation's
 * backup keeps the id. When Redis holds no id (an upgrade from before it, a Redis that lost its
 * data) PostgreSQL's is copied there if PostgreSQL holds every id the known set holds (none to
 * deny), or one of them created before PostgreSQL's installation row (the fleet of the upgraded
 * installation: a wrong or new database created its row before any of its collectors); otherwise
 * nothing is adopted, denied or added, with an error at each run (it may be another's database).
 * With the ids the same, a PostgreSQL holding none of them is a backup of this installation older
 * than every registration (or a database the operator adopted): they are all denied. Returns how
 * many it denied.
 */
export async function reconcileKnownCollectors(deps: Deps): Promise<number> {
  const { pool, redis, keys, logger } = deps;
  const inRedis = await redis.get(keys.installation);
  const known = await redis.smembers(keys.knownCollectors);
  const installation = await readInstallationId(pool);
  // `older`: created before the installation row, i.e. before the upgrade that created it (0044).
  const { rows } = await pool.query<{ id: string; older: boolean }>(
    `SELECT id::text AS id, coalesce(created_at < (SELECT created_at FROM installation), false) AS older FROM collectors`,
  );
  const held = new Set(rows.map((r) => r.id));
  const knownIds = new Set(known.filter((id) => UUID.test(id)).map((id) => id.toLowerCase()));
  const unknown = [...knownIds].filter((id) => !held.has(id));
  const differs = (redisId: string) =>
    logger.error(
      {
        installation_in_redis: redisId,
        installation_in_postgresql: installation,
        known: knownIds.size,
        collectors_in_postgresql: held.size,
      },
      `Redis belongs to another installation than PostgreSQL (${keys.installation} is not the id in PostgreSQL's table ` +
        'installation): a wrong DATABASE_URL, another installation on the same REDIS_KEY_PREFIX, a database re-created ' +
        'from nothing, or one restored from a backup taken before migration 0044 (it got a new id)? Nothing denied: the collectors Redis knows are not checked against this PostgreSQL. If it is the ' +
        `right one, adopt its id (${ADOPT_COMMAND}; every collector Redis knows and it lacks is then refused as deleted)`,
    );
  if (installation === null) {
    logger.error(
      { installation_in_redis: inRedis },
      "PostgreSQL holds no installation id (its table installation is empty: restored without that table's data?): " +
        'nothing denied; the collectors Redis knows are not checked against it until the row is back',
    );
    return 0;
  }
  if (inRedis !== null && inRedis !== installation) {
    differs(inRedis);
    return 0;
  }
  if (inRedis === null) {
    // Adopted when that denies nothing (PostgreSQL holds every id Redis knows), or from a database
    // holding a collector Redis knows from before the database had its id (the upgrade that
    // created it): a wrong or new database created its id before any of its collectors, so one
    // registered there does not make it this installation's.
    const older = new Set(rows.filter((r) => r.older).map((r) => r.id));
    if (unknown.length > 0 && ![...knownIds].some((id) => older.has(id))) {
      logger.error(
        { known: knownIds.size, lacking: unknown.length, collectors_in_postgresql: held.size, ids: unknown.slice(0, 20) },
        `Redis holds no installation id (${keys.installation}) and PostgreSQL lacks ${unknown.length} of the collectors ` +
          'Redis knows, holding none of them from before its own id: a wrong DATABASE_URL, another installation on the ' +
          'same REDIS_KEY_PREFIX, or PostgreSQL restored from a backup older than every registration? Nothing adopted or ' +
          `denied. If it is the right one, adopt its id (${ADOPT_COMMAND}; every collector Redis knows and it lacks is ` +
          'then refused as deleted)',
      );
      return 0;
    }
    // An upgrade from before the id, or a Redis that lost its data: PostgreSQL's becomes Redis's
    // (NX: another admin service adopting its own at the same moment wins, and this one says so).
    await redis.set(keys.installation, installation, 'NX');
    const adopted = await redis.get(keys.installation);
    if (adopted !== installation) {
      differs(adopted ?? '(none)');
      return 0;
    }
    logger.info({ installation }, `Redis held no installation id; copied PostgreSQL's to ${keys.installation}`);
  }
  const unrecorded = rows.map((r) => r.id).filter((id) => !knownIds.has(id));
  if (unrecorded.length) await recordKnownCollectors(redis, keys, unrecorded);
  if (unknown.length === 0) return 0;
  const [denied, deleted] = await Promise.all([
    redis.smembers(keys.deniedCollectors).then((m) => new Set(m)),
    redis.smembers(keys.deletedCollectors).then((m) => new Set(m)),
  ]);
  const refuse = unknown.filter((id) => !denied.has(id) || !deleted.has(id));
  if (refuse.length === 0) return 0;
  // The deny time Redis records beside the set, on PostgreSQL's clock: should a later restore bring
  // a row back, the repair keeps it refused until an admin enables it (no enable is later than this).
  const { rows: now } = await pool.query<{ us: string }>(
    'SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint::text AS us',
  );
  let published = 0;
  for (const id of refuse) {
    const change = { collector_id: id, kind: 'deleted' as const, denyCollector: true, deniedAtUs: now[0]!.us };
    if (!(await publishChange(deps, change, { quiet: true }))) break;
    published++;
  }
  if (published)
    logger.error(
      { collectors: published, ids: refuse.slice(0, Math.min(published, 20)) },
      'collectors Redis knows have no row in PostgreSQL: registered after the backup PostgreSQL was restored from? ' +
        "their tokens are refused from now on, as a deleted collector's (401); register them again (a new id and token)",
    );
  if (published < refuse.length) throw new Error('a collector change could not be published to Redis');
  return published;
}

/**
 * Denied collectors PostgreSQL also refuses, without a recorded deny time (denied before the time
 * was recorded): records PostgreSQL's (HSETNX: a time recorded meanwhile stays). Best effort.
 */
async function recordMissingDenyTimes(
  deps: Deps,
  refused: { id: string }[],
  deniedCollectors: Set<string>,
  deniedAt: Record<string, string>,
): Promise<void> {
  const missing = refused.map((c) => c.id).filter((id) => deniedCollectors.has(id) && deniedAt[id] === undefined);
  if (missing.length === 0) return;
  try {
    const { rows } = await deps.pool.query<{ id: string; denied_at_us: string }>(
      `SELECT id::text AS id, ${DENIED_AT_US} FROM collectors WHERE id = ANY($1::uuid[]) AND (NOT enabled OR deleted_at IS NOT NULL)`,
      [missing],
    );
    const multi = deps.redis.multi();
    for (const r of rows) multi.hsetnx(deps.keys.deniedAt, r.id, r.denied_at_us);
    await multi.exec();
  } catch (err) {
    deps.logger.warn({ err }, 'could not record the deny times of collectors denied before they were recorded');
  }
}

/**
 * Raises `keys.configVersions` entries below collectors.config_version (a `setConfigVersion` lost
 * while Redis refused writes: the edge then answered heartbeats with the old version, and the
 * collector never pulled its new config). Only raises, and only entries present (an absent one the
 * edge reads from PostgreSQL itself), in one script per 1,000 collectors: a bump committed meanwhile
 * is never undone. Returns how many it raised.
 *
 * An entry *above* PostgreSQL's (only a PostgreSQL restored from a backup older than the bump can
 * leave one: the admin writes PostgreSQL first) raises PostgreSQL's past it, and then the entry:
 * the collectors pull their config at a version higher than the one they have (ours compares with
 * `>`), and get what PostgreSQL holds. Left as it was, every collector edited after the backup kept
 * the config PostgreSQL no longer has, and ignored the next edits until their version overtook the
 * lost one. Logged as an error: the edits since the backup are gone from PostgreSQL.
 */
export async function repairConfigVersions(deps: Deps): Promise<number> {
  // Redis first: it is written only after PostgreSQL commits, so an entry read before PostgreSQL's
  // row that is above it can only come from a PostgreSQL that went back (an edit racing the repair
  // raises both, PostgreSQL first).
  const mirrored = await deps.redis.hgetall(deps.keys.configVersions);
  const { rows } = await deps.pool.query<{ id: string; v: number }>(
    'SELECT id::text AS id, config_version AS v FROM collectors WHERE deleted_at IS NULL',
  );
  let raised = 0;
  const ahead: { id: string; v: number }[] = [];
  for (let at = 0; at < rows.length; at += 1000) {
    const args = rows.slice(at, at + 1000).flatMap((r) => [r.id, String(r.v)]);
    const [n] = (await deps.redis.eval(RAISE_VERSIONS, 1, deps.keys.configVersions, ...args)) as [number, ...string[]];
    raised += Number(n);
  }
  for (const r of rows)
    if (mirrored[r.id] !== undefined && Number(mirrored[r.id]) > r.v) ahead.push({ id: r.id, v: Number(mirrored[r.id]) });
  if (raised) deps.logger.warn({ collectors: raised }, 'config versions in Redis were behind PostgreSQL; raised them');
  if (ahead.length === 0) return raised;
  // Past Redis's, also when an admin bumped it meanwhile (GREATEST); not a row bumped past it already.
  const { rows: bumped } = await deps.pool.query<{ id: string; v: number }>(
    `UPDATE collectors c SET config_version = GREATEST(c.config_version, a.v) + 1, updated_at = now()
       FROM unnest($1::uuid[], $2::int[]) AS a(id, v)
      WHERE c.id = a.id AND c.config_version <= a.v
     RETURNING c.id::text AS id, c.config_version AS v`,
    [ahead.map((a) => a.id), ahead.map((a) => a.v)],
  );
  for (let at = 0; at < bumped.length; at += 1000) {
    const args = bumped.slice(at, at + 1000).flatMap((r) => [r.id, String(r.v)]);
    await deps.redis.eval(RAISE_VERSIONS, 1, deps.keys.configVersions, ...args);
  }
  if (bumped.length === 0) return raised; // every one raised meanwhile by an edit
  deps.logger.error(
    { collectors: bumped.length, ids: bumped.slice(0, 20).map((r) => r.id) },
    'config versions in Redis were ahead of PostgreSQL (PostgreSQL restored from an older backup?): the config ' +
      'edits made since that backup are gone from PostgreSQL; raised its versions past them so that these ' +
      'collectors pull the config PostgreSQL holds',
  );
  return raised + bumped.length;
}

/** Raises entries behind PostgreSQL's; answers their count, then each entry ahead of it (id, version). */
const RAISE_VERSIONS = `local n = 0
local ahead = {}
for i = 1, #ARGV, 2 do
  local cur = redis.call('HGET', KEYS[1], ARGV[i])
  if cur and tonumber(cur) < tonumber(ARGV[i + 1]) then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    n = n + 1
  elseif cur and tonumber(cur) > tonumber(ARGV[i + 1]) then
    ahead[#ahead + 1] = ARGV[i]
    ahead[#ahead + 1] = cur
  end
end
table.insert(ahead, 1, n)
return ahead`;
