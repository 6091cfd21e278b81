/**
 * `npm run reencrypt-secrets`: after a rotation of ENCRYPTION_KEY, writes every collector's stored
 * password and certificate (deleted collectors' too), and the audit log's marker key, again under the active key, so the old keys can
 * leave the list; `--check` only counts, for "may I drop k1?". README "Rotating ENCRYPTION_KEY".
 */
import { z } from 'zod';
import { configOrExit, encryptionSchema, loadConfig, postgresUrl } from '@pga/config';
import { createSecretBox } from '@pga/crypto';
import { createPool } from '@pga/db';
// The module, not @pga/admin-api's index: that loads the whole tRPC router, seconds before `--help` answers.
import { allCurrent, reencryptSecrets, type ReencryptSummary } from '../services/admin-api/src/collectors/reencrypt-secrets';
import { helpOrExit } from './lib/help-option';

const USAGE = `npm run reencrypt-secrets [-- --check] [-- --batch-size N]
  Writes every stored collector password and certificate (deleted collectors' too), and the audit
  log's key for unknown usernames, that is not under ENCRYPTION_KEY's active (first) key again under
  it, N collectors at a time (default 500), each by compare-and-set: a secret an admin saves (or an
  admin service moves) meanwhile is kept and read again. A secret no listed key decrypts is named
  and left unchanged. Safe to run while the services run, and again.
  Prints a line per batch on stderr and the counts on stdout; records them in the audit log
  (collector.secrets_reencrypted).
  --check, --dry-run   only count the secrets by the key that decrypts them; writes nothing
  --batch-size N       collectors per batch, 1-10000; default 500
  Exit status: 0 when every secret is under the active key (the others may leave ENCRYPTION_KEY),
  1 when one is not (under another key, or decrypted by none) or the run failed, 2 for a bad option.
  DATABASE_URL     the services' PostgreSQL (required)
  ENCRYPTION_KEY   the services' list, the new key first: k2:<new key>,k1:<old key> (required);
                   give the admin service and every edge this list (and restart them) first
README.md, "Rotating ENCRYPTION_KEY".`;

const options = helpOrExit('reencrypt-secrets', USAGE, {
  check: { type: 'boolean' },
  'dry-run': { type: 'boolean' },
  'batch-size': { type: 'string' },
});
const check = Boolean(options.check || options['dry-run']);
const batchSize = Number(options['batch-size'] ?? 500);
if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 10_000) {
  console.error(
    `reencrypt-secrets: --batch-size must be a whole number from 1 to 10000, not "${options['batch-size']}"\n\n${USAGE}`,
  );
  process.exit(2);
}

const config = configOrExit('reencrypt-secrets', () =>
  loadConfig(z.object({ DATABASE_URL: postgresUrl() }).extend(encryptionSchema.shape)),
);
const box = createSecretBox(config.ENCRYPTION_KEY);
const pool = createPool(config.DATABASE_URL, { max: 1, applicationName: 'pga-reencrypt-secrets' });
const counts = (byKey: Record<string, number>) =>
  Object.entries(byKey)
    .sort(([a], [b]) => (a === box.activeKeyId ? -1 : b === box.activeKeyId ? 1 : a.localeCompare(b)))
    .map(([id, n]) => `"${id}"${id === box.activeKeyId ? ' (active)' : ''} ${n}`)
    .join(', ') || 'none';
const markerKeyLine = (m: NonNullable<ReencryptSummary['auditMarkerKey']>): string => {
  switch (m.state) {
    case 'absent':
      return 'none stored yet';
    case 'current':
      return `under the active key "${m.keyId}"`;
    case 'reencrypted':
      return `re-encrypted (from "${m.fromKeyId}")`;
    case 'not_current':
      return `under "${m.keyId}", ${check ? 'to re-encrypt' : 'changed on every attempt (run again)'}`;
    case 'undecryptable':
      return `${m.keyId === null ? 'no key id' : `key "${m.keyId}"`}, decrypted by no key in ENCRYPTION_KEY; left unchanged`;
  }
};
const progress = (s: Readonly<ReencryptSummary>) =>
  console.error(
    `reencrypt-secrets: ${s.collectors} collectors read, ${s.secrets} secrets: ` +
      (check
        ? `${s.current} under the active key, ${s.notCurrent} under another, ${s.failed.length} undecryptable`
        : `${s.reencrypted} re-encrypted, ${s.current} already current, ${s.failed.length} failed`),
  );

try {
  console.log(
    `reencrypt-secrets: ${check ? 'checking' : 're-encrypting'} under ENCRYPTION_KEY ${box.keyIds.map((id) => `"${id}"`).join(', ')} ` +
      `(active "${box.activeKeyId}")`,
  );
  const s = await reencryptSecrets({ pool, box, check, batchSize, onBatch: progress });
  for (const f of s.failed)
    console.log(
      `reencrypt-secrets: collector ${f.collectorId}${f.deleted ? ' (deleted)' : ''} ${f.field}: ` +
        `${f.keyId === null ? 'no key id' : `key "${f.keyId}"`}, decrypted by no key in ENCRYPTION_KEY (${f.reason}); left unchanged`,
    );
  console.log(
    `reencrypt-secrets: ${s.collectors} collectors (${s.deleted} deleted), ${s.secrets} secrets; by the key that decrypts them: ` +
      `${counts(s.foundByKeyId)}; undecryptable ${s.failed.length}` +
      (s.mislabelled ? `; ${s.mislabelled} labelled with another key id than the one that decrypts them` : ''),
  );
  console.log(
    check
      ? `reencrypt-secrets: --check: ${s.current} under the active key "${s.activeKeyId}", ${s.notCurrent} to re-encrypt, ` +
          `${s.failed.length} undecryptable; nothing written`
      : `reencrypt-secrets: re-encrypted ${s.reencrypted} (from ${counts(s.reencryptedByKeyId)}), already current ${s.current}, ` +
          `failed ${s.failed.length}` +
          (s.changedMeanwhile ? `, ${s.changedMeanwhile} changed by an admin meanwhile (kept, read again)` : '') +
          (s.notCurrent ? `, ${s.notCurrent} changed on every attempt (run again)` : ''),
  );
  if (s.auditMarkerKey)
    console.log(`reencrypt-secrets: the audit log's key for unknown usernames: ${markerKeyLine(s.auditMarkerKey)}`);
  const others = box.keyIds.filter((id) => id !== box.activeKeyId);
  if (allCurrent(s))
    console.log(
      `reencrypt-secrets: every secret is under "${s.activeKeyId}"` +
        (others.length ? `: ${others.map((id) => `"${id}"`).join(', ')} may leave ENCRYPTION_KEY` : ''),
    );
  else {
    console.log(
      `reencrypt-secrets: not every secret is under "${s.activeKeyId}": keep ENCRYPTION_KEY's other keys` +
        (s.failed.length ? '; a secret decrypted by no key needs its key listed again, or the secret saved again' : ''),
    );
    process.exitCode = 1;
  }
} catch (err) {
  console.error(`reencrypt-secrets: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
} finally {
  await pool.end();
}
