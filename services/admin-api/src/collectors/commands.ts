import type { Deps } from '../deps';

/** A command still waiting for its collector's heartbeat: not delivered, not dropped, not expired. */
const WAITING = 'delivered_at IS NULL AND dropped_at IS NULL AND expires_at > now()';

/** How many commands wait for collector $1. */
export const COUNT_WAITING_COMMANDS = `SELECT count(*)::int AS n FROM collector_commands WHERE collector_id = $1 AND ${WAITING}`;

/** Marks collector $1's waiting commands dropped (reason $2); inside the caller's transaction. */
export const DROP_WAITING_COMMANDS = `
UPDATE collector_commands SET dropped_at = now(), drop_reason = $2 WHERE collector_id = $1 AND ${WAITING}`;

/**
 * Appends a mailbox entry and makes the list live at least until the entry expires, never shorter:
 * with a plain PEXPIREAT a command queued after COMMAND_TTL_SECONDS was lowered (or by an instance
 * with a lower setting) cut the earlier, longer-lived ones short. PTTL and TIME, not PEXPIREAT's
 * GT/NX options, so Redis 6 runs it too.
 */
const QUEUE_COMMAND = `
redis.call('RPUSH', KEYS[1], ARGV[1])
local want = tonumber(ARGV[2])
local ttl = redis.call('PTTL', KEYS[1])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ttl < 0 or now + ttl < want then redis.call('PEXPIREAT', KEYS[1], want) end
return 1`;

export async function queueCommand(deps: Deps, collectorId: string, entry: string, expiresAtMs: number): Promise<void> {
  await deps.redis.eval(QUEUE_COMMAND, 1, deps.keys.commands(collectorId), entry, expiresAtMs);
}

/**
 * Mailbox entries written before migration 0039 carry no `expires_at`, so the edge would deliver
 * them however old (a week-old `stop` to a collector coming back). Run once per process when Redis
 * is first ready: each such entry gets its row's `expires_at` (0039 set it to requested_at + 24 h)
 * if the row still waits, and is removed otherwise; the list's expiry follows its newest entry.
 * One atomic script per list, so an edge draining it meanwhile loses or repeats nothing.
 */
const UPGRADE_MAILBOX = `
local expiries = {}
for i = 1, #ARGV, 2 do expiries[ARGV[i]] = tonumber(ARGV[i + 1]) end
local keep, newest, changed = {}, 0, false
for _, text in ipairs(redis.call('LRANGE', KEYS[1], 0, -1)) do
  local ok, entry = pcall(cjson.decode, text)
  if ok and type(entry) == 'table' and entry.expires_at == nil and entry.id ~= nil then
    changed = true
    local exp = expiries[tostring(entry.id)]
    if exp then
      entry.expires_at = exp
      table.insert(keep, cjson.encode(entry))
      if exp > newest then newest = exp end
    end
  else
    table.insert(keep, text)
    if ok and type(entry) == 'table' and tonumber(entry.expires_at) and tonumber(entry.expires_at) > newest then
      newest = tonumber(entry.expires_at)
    end
  end
end
if not changed then return 0 end
redis.call('DEL', KEYS[1])
if #keep > 0 then
  redis.call('RPUSH', KEYS[1], unpack(keep))
  if newest > 0 then redis.call('PEXPIREAT', KEYS[1], newest) end
end
return 1`;

export async function upgradeLegacyMailboxes(deps: Deps): Promise<number> {
  // Every list that can hold an entry is a collector's with an undelivered, undropped command (a
  // delivered one left its list); only the still-waiting ones' expiries are passed. No keyspace
  // SCAN: with a day of idempotency markers Redis holds millions of keys.
  const { rows } = await deps.pool.query<{ collector_id: string; id: string; expires_at: Date; waiting: boolean }>(
    `SELECT collector_id, id, expires_at, ${WAITING} AS waiting FROM collector_commands
      WHERE delivered_at IS NULL AND dropped_at IS NULL`,
  );
  const lists = new Map<string, string[]>();
  for (const r of rows) {
    const args = lists.get(r.collector_id) ?? [];
    if (r.waiting) args.push(r.id, String(r.expires_at.getTime()));
    lists.set(r.collector_id, args);
  }
  let upgraded = 0;
  for (const [collectorId, args] of lists)
    upgraded += Number(await deps.redis.eval(UPGRADE_MAILBOX, 1, deps.keys.commands(collectorId), ...args));
  if (upgraded > 0) deps.logger.info({ mailboxes: upgraded }, 'command mailboxes from before migration 0039 given expiries');
  return upgraded;
}

/**
 * After a delete: the collector's command mailbox goes (its commands are marked dropped in the same
 * transaction as the delete), and so does its latest-heartbeat hash, which nothing reads for a
 * deleted collector (the writer skips an id whose hash is gone; the edge rewrites it on the next
 * heartbeat). Logged, not thrown, if Redis is down: the delete is committed, and `restore` empties
 * the mailbox again before the collector can heartbeat.
 */
export async function clearCollectorMailbox(deps: Deps, collectorId: string): Promise<void> {
  try {
    await deps.redis.del(
      deps.keys.commands(collectorId),
      deps.keys.heartbeat(collectorId),
      deps.keys.heartbeatMinutes(collectorId),
    );
  } catch (err) {
    deps.logger.error({ err, collectorId }, 'collector deleted but its pending commands not removed from Redis');
  }
}
