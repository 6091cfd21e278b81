import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createSecretBox } from '@pga/crypto';
import type { Pool } from '@pga/db';
import { reencryptSecrets, REENCRYPT_AUDIT_ACTION } from '@pga/admin-api';
import { loadAuditMarkerKey } from '../../services/admin-api/src/audit/marker-key';
import { createHarness, restartedService, type Harness } from './harness';
import { form } from './fixtures';

const root = path.resolve(import.meta.dirname, '../..');
const CERTIFICATE = '-----BEGIN CERTIFICATE-----\nMIIBreencrypt\n-----END CERTIFICATE-----';
const newKey = () => randomBytes(32).toString('base64');

/** `npm run reencrypt-secrets` as an operator runs it: its own process, configured by the environment. */
function reencrypt(env: { DATABASE_URL: string; ENCRYPTION_KEY: string }, args: string[] = []) {
  const res = spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/reencrypt-secrets.ts'), ...args], {
    env: { PATH: process.env.PATH, ...env },
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

type Secrets = Map<string, { password_encrypted: string; ssl_certificate_encrypted: string | null }>;
async function storedSecrets(pool: Pool): Promise<Secrets> {
  const { rows } = await pool.query<{ id: string; password_encrypted: string; ssl_certificate_encrypted: string | null }>(
    'SELECT id::text, password_encrypted, ssl_certificate_encrypted FROM collectors ORDER BY id',
  );
  return new Map(rows.map(({ id, ...secrets }) => [id, secrets]));
}

/** A fleet registered under k1: passwords, certificates, one collector deleted. Answers the plaintexts by collector. */
async function fleetUnderK1(h: Harness, count = 5): Promise<Map<string, { password: string; certificate?: string }>> {
  const plain = new Map<string, { password: string; certificate?: string }>();
  for (let i = 0; i < count; i++) {
    const password = `pw-${i}-${randomBytes(4).toString('hex')}`;
    const certificate = i % 2 === 0 ? CERTIFICATE.replace('reencrypt', `reencrypt${i}`) : undefined;
    const { collector } = await h
      .caller(h.admin)
      .collectors.register(form({ password, ...(certificate ? { ssl_certificate: certificate } : {}) }));
    plain.set(collector.id, { password, ...(certificate ? { certificate } : {}) });
  }
  await h.caller(h.admin).collectors.delete({ id: [...plain.keys()][0]! });
  return plain;
}

const storedMarkerKey = async (pool: Pool) =>
  (await pool.query<{ key_encrypted: string }>('SELECT key_encrypted FROM audit_marker_key')).rows[0]!.key_encrypted;

describe('npm run reencrypt-secrets', () => {
  it(
    "moves the audit log's marker key too: --check refuses while it alone is under the old key; the admin service with the new key alone keeps it",
    { timeout: 180_000 },
    async () => {
      const k1 = newKey();
      const k2 = newKey();
      await using h = await createHarness({ ENCRYPTION_KEY: `k1:${k1}` });
      const key = await h.service.deps.auditMarkerKey(); // stored at the admin service's start, under k1
      const pool = h.service.deps.pool;
      expect(await storedMarkerKey(pool)).toMatch(/^v1\.k1\./);
      const env = { DATABASE_URL: h.db.url, ENCRYPTION_KEY: `k2:${k2},k1:${k1}` };

      // No collector secret at all: only the marker key is under k1, and k1 may not leave yet.
      const checked = reencrypt(env, ['--check']);
      expect(checked.status, checked.stdout).toBe(1);
      expect(checked.stdout).toContain(`the audit log's key for unknown usernames: under "k1", to re-encrypt`);
      expect(checked.stdout).toContain("keep ENCRYPTION_KEY's other keys");
      expect(await storedMarkerKey(pool)).toMatch(/^v1\.k1\./);

      const run = reencrypt(env);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toContain(`the audit log's key for unknown usernames: re-encrypted (from "k1")`);
      expect(run.stdout).toContain('"k1" may leave ENCRYPTION_KEY');
      expect(await storedMarkerKey(pool)).toMatch(/^v1\.k2\./);
      const { rows: audits } = await pool.query('SELECT details FROM collector_audit_log WHERE action = $1', [
        REENCRYPT_AUDIT_ACTION,
      ]);
      expect(audits.map((a) => a.details.audit_marker_key)).toEqual([{ state: 'reencrypted', fromKeyId: 'k1' }]);
      expect(JSON.stringify(audits)).not.toContain(key.toString('base64'));
      expect(reencrypt({ ...env, ENCRYPTION_KEY: `k2:${k2}` }, ['--check']).status).toBe(0);

      // k1 dropped: the admin service reads the same key (not a new one, which would break the markers' link).
      await using rotated = restartedService(h, { ENCRYPTION_KEY: `k2:${k2}` });
      expect((await rotated.deps.auditMarkerKey()).equals(key)).toBe(true);
    },
  );

  it("an admin service's start that moves the marker key between the command's read and write: neither overwrites the other, the key stays", async () => {
    const k1 = newKey();
    const k2 = newKey();
    await using h = await createHarness({ ENCRYPTION_KEY: `k1:${k1}` });
    const key = await h.service.deps.auditMarkerKey();
    const pool = h.service.deps.pool;
    const box = createSecretBox(`k2:${k2},k1:${k1}`);
    let admin: string | undefined;
    const racing = {
      query: async (sql: string, params?: unknown[]) => {
        if (admin === undefined && /UPDATE audit_marker_key/.test(sql)) {
          // An admin service restarted with the new list starts here, and moves the key first.
          expect((await loadAuditMarkerKey(pool, box, { warn: () => undefined })).equals(key)).toBe(true);
          admin = await storedMarkerKey(pool);
        }
        return pool.query(sql, params);
      },
    } as unknown as Pool;
    const summary = await reencryptSecrets({ pool: racing, box });
    expect(admin).toMatch(/^v1\.k2\./);
    // The command's write missed (compare-and-set), read again and found it current: the admin's value stays.
    expect(summary.auditMarkerKey).toEqual({ state: 'current', keyId: 'k2' });
    expect(await storedMarkerKey(pool)).toBe(admin);
    expect(box.open(admin!, 'audit marker key').plaintext).toBe(key.toString('base64'));
  });

  it(
    're-encrypts every secret under k1 with k2 (deleted collectors too): k1 can then leave the list; --check says so by its exit status',
    { timeout: 180_000 },
    async () => {
      const k1 = newKey();
      const k2 = newKey();
      await using h = await createHarness({ ENCRYPTION_KEY: `k1:${k1}` });
      const plain = await fleetUnderK1(h);
      const pool = h.service.deps.pool;
      const before = await storedSecrets(pool);
      expect([...before.values()].every((s) => s.password_encrypted.startsWith('v1.k1.'))).toBe(true);
      const env = { DATABASE_URL: h.db.url, ENCRYPTION_KEY: `k2:${k2},k1:${k1}` };

      // May k1 be dropped? Not yet: 5 passwords and 3 certificates are under it; nothing is written.
      const checked = reencrypt(env, ['--check']);
      expect(checked.status, checked.stderr).toBe(1);
      expect(checked.stdout).toContain('"k1" 8');
      expect(checked.stdout).toContain('0 under the active key "k2", 8 to re-encrypt, 0 undecryptable; nothing written');
      expect(await storedSecrets(pool)).toEqual(before);
      expect(reencrypt(env, ['--dry-run']).status).toBe(1);

      const run = reencrypt(env, ['--batch-size', '2']);
      expect(run.status, run.stderr).toBe(0);
      expect(run.stdout).toContain('5 collectors (1 deleted), 8 secrets');
      expect(run.stdout).toContain('re-encrypted 8 (from "k1" 8), already current 0, failed 0');
      expect(run.stdout).toContain('"k1" may leave ENCRYPTION_KEY');
      // progress: one line per batch of 2 collectors
      expect(run.stderr.match(/^reencrypt-secrets: \d+ collectors read/gm)).toHaveLength(3);

      // Every secret under k2 now, and a ring without k1 reads each one as it was.
      const onlyK2 = createSecretBox(`k2:${k2}`);
      const after = await storedSecrets(pool);
      for (const [id, p] of plain) {
        const s = after.get(id)!;
        expect(s.password_encrypted).toMatch(/^v1\.k2\./);
        expect(onlyK2.decrypt(s.password_encrypted, id)).toBe(p.password);
        if (p.certificate) expect(onlyK2.decrypt(s.ssl_certificate_encrypted!, id)).toBe(p.certificate);
        else expect(s.ssl_certificate_encrypted).toBeNull();
      }
      // The admin service restarted with k2 alone reads them (its start-up check finds nothing to say).
      {
        await using rotated = restartedService(h, { ENCRYPTION_KEY: `k2:${k2}` });
        const live = [...plain.keys()][2]!;
        expect(rotated.deps.secretBox.decrypt(after.get(live)!.ssl_certificate_encrypted!, live)).toBe(
          plain.get(live)!.certificate,
        );
      }

      // One audit entry with the counts.
      const { rows: audits } = await pool.query('SELECT actor_name, details FROM collector_audit_log WHERE action = $1', [
        REENCRYPT_AUDIT_ACTION,
      ]);
      expect(audits).toHaveLength(1);
      expect(audits[0].actor_name).toBe('npm run reencrypt-secrets');
      expect(audits[0].details).toMatchObject({
        active_key_id: 'k2',
        collectors: 5,
        deleted_collectors: 1,
        secrets: 8,
        found_by_key_id: { k1: 8 },
        reencrypted: 8,
        reencrypted_by_key_id: { k1: 8 },
        already_current: 0,
        failed: 0,
      });

      // Idempotent: nothing left to do, nothing written; --check now answers 0, also with k1 gone.
      const again = reencrypt(env);
      expect(again.status, again.stderr).toBe(0);
      expect(again.stdout).toContain('re-encrypted 0 (from none), already current 8, failed 0');
      expect(await storedSecrets(pool)).toEqual(after);
      expect(reencrypt(env, ['--check']).status).toBe(0);
      expect(reencrypt({ ...env, ENCRYPTION_KEY: `k2:${k2}` }, ['--check']).status).toBe(0);
    },
  );

  it('does not overwrite a secret an admin saves between its read and its write: reads it again and re-encrypts that one', async () => {
    const k1 = newKey();
    const k2 = newKey();
    await using h = await createHarness({ ENCRYPTION_KEY: `k1:${k1}` });
    const plain = await fleetUnderK1(h, 3);
    const [, target, other] = [...plain.keys()];
    const box = createSecretBox(`k2:${k2},k1:${k1}`);
    const pool = h.service.deps.pool;
    // The admin service still running with k1 alone (not restarted yet) saves a new password for
    // `target` after the command read the batch and before its write reaches PostgreSQL.
    let interleaved = false;
    const racing = {
      query: async (sql: string, params?: unknown[]) => {
        if (!interleaved && /UPDATE collectors c SET password_encrypted/.test(sql)) {
          interleaved = true;
          await h.caller(h.admin).collectors.update({ id: target!, password: 'saved-by-an-admin-meanwhile' });
        }
        return pool.query(sql, params);
      },
    } as unknown as Pool;

    const summary = await reencryptSecrets({ pool: racing, box, batchSize: 10 });
    expect(interleaved).toBe(true);
    const after = await storedSecrets(pool);
    // The admin's password is kept (not the stale one read before), and re-encrypted on its second read.
    expect(after.get(target!)!.password_encrypted).toMatch(/^v1\.k2\./);
    expect(box.decrypt(after.get(target!)!.password_encrypted, target!)).toBe('saved-by-an-admin-meanwhile');
    expect(box.decrypt(after.get(other!)!.password_encrypted, other!)).toBe(plain.get(other!)!.password);
    expect(summary).toMatchObject({ secrets: 5, reencrypted: 5, changedMeanwhile: 1, current: 0, notCurrent: 0, failed: [] });
  });

  it(
    'reports a secret no listed key decrypts with its collector id, leaves it byte for byte, and exits 1',
    { timeout: 180_000 },
    async () => {
      const k1 = newKey();
      const k2 = newKey();
      await using h = await createHarness({ ENCRYPTION_KEY: `k1:${k1}` });
      const plain = await fleetUnderK1(h, 3);
      const [lost, tampered, fine] = [...plain.keys()];
      const pool = h.service.deps.pool;
      // One under a key nobody listed any more ("k0"), one whose ciphertext was altered.
      const underK0 = createSecretBox(`k0:${newKey()}`).encrypt('only-k0-opens-this', lost!);
      await pool.query('UPDATE collectors SET password_encrypted = $2 WHERE id = $1', [lost, underK0]);
      const original = (await storedSecrets(pool)).get(tampered!)!.password_encrypted;
      const altered = `${original.slice(0, -4)}${original.endsWith('AAAA') ? 'BBBB' : 'AAAA'}`;
      await pool.query('UPDATE collectors SET password_encrypted = $2 WHERE id = $1', [tampered, altered]);
      const env = { DATABASE_URL: h.db.url, ENCRYPTION_KEY: `k2:${k2},k1:${k1}` };

      const checked = reencrypt(env, ['--check']);
      expect(checked.status).toBe(1);
      expect(checked.stdout).toContain(`collector ${lost} (deleted) password: key "k0", decrypted by no key in ENCRYPTION_KEY`);

      const run = reencrypt(env);
      expect(run.status, run.stderr).toBe(1);
      expect(run.stdout).toContain(`collector ${lost} (deleted) password: key "k0", decrypted by no key in ENCRYPTION_KEY`);
      expect(run.stdout).toContain(`collector ${tampered} password: key "k1", decrypted by no key in ENCRYPTION_KEY`);
      expect(run.stdout).toContain('failed 2');
      expect(run.stdout).toContain('not every secret is under "k2"');
      const after = await storedSecrets(pool);
      expect(after.get(lost!)!.password_encrypted).toBe(underK0);
      expect(after.get(tampered!)!.password_encrypted).toBe(altered);
      // The rest was re-encrypted all the same (the lost collector's certificate too).
      const onlyK2 = createSecretBox(`k2:${k2}`);
      expect(onlyK2.decrypt(after.get(fine!)!.password_encrypted, fine!)).toBe(plain.get(fine!)!.password);
      expect(onlyK2.decrypt(after.get(lost!)!.ssl_certificate_encrypted!, lost!)).toBe(plain.get(lost!)!.certificate);
      const { rows } = await pool.query('SELECT details FROM collector_audit_log WHERE action = $1', [REENCRYPT_AUDIT_ACTION]);
      expect(rows[0].details.failed).toBe(2);
      expect(rows[0].details.failed_secrets).toEqual(
        expect.arrayContaining([
          { collector_id: lost, field: 'password', key_id: 'k0' },
          { collector_id: tampered, field: 'password', key_id: 'k1' },
        ]),
      );
      // --check keeps failing while they are there: k1 must not be dropped on its word.
      expect(reencrypt(env, ['--check']).status).toBe(1);
    },
  );

  it(
    'relabels what a list read by position stored under the active key with another id, so that id can leave the list unwarned',
    { timeout: 180_000 },
    async () => {
      const [K1, K2] = [newKey(), newKey()];
      await using h = await createHarness({ ENCRYPTION_KEY: `k1:${K1}` });
      const [a, b] = [...(await fleetUnderK1(h, 2)).keys()];
      const pool = h.service.deps.pool;
      // `K2,K1` before 2026-12-07 was read as k1:K2,k2:K1: what it stored is under K2 labelled "k1".
      const positional = createSecretBox(`k1:${K2},k2:${K1}`);
      await pool.query('UPDATE collectors SET password_encrypted = $2, ssl_certificate_encrypted = NULL WHERE id = $1', [
        a,
        positional.encrypt('under K2 labelled k1', a!),
      ]);
      const env = { DATABASE_URL: h.db.url, ENCRYPTION_KEY: `k2:${K2},k1:${K1}` };
      // By the key that decrypts them: one under the active key (mislabelled), one under k1.
      const checked = reencrypt(env, ['--check']);
      expect(checked.status).toBe(1);
      expect(checked.stdout).toContain('by the key that decrypts them: "k2" (active) 1, "k1" 1');
      expect(checked.stdout).toContain('1 labelled with another key id than the one that decrypts them');
      expect(checked.stdout).toContain('0 under the active key "k2", 2 to re-encrypt');

      expect(reencrypt(env).status).toBe(0);
      const after = await storedSecrets(pool);
      for (const id of [a!, b!]) expect(after.get(id)!.password_encrypted).toMatch(/^v1\.k2\./);
      expect(createSecretBox(`k2:${K2}`).decrypt(after.get(a!)!.password_encrypted, a!)).toBe('under K2 labelled k1');
    },
  );

  it(
    '--help prints its usage without an environment; an unknown option or a bad batch size exits 2',
    { timeout: 180_000 },
    () => {
      const run = (args: string[]) =>
        spawnSync(path.join(root, 'node_modules/.bin/tsx'), [path.join(root, 'scripts/reencrypt-secrets.ts'), ...args], {
          env: { PATH: process.env.PATH },
          encoding: 'utf8',
          timeout: 30_000,
        });
      const help = run(['--help']);
      expect(help.status).toBe(0);
      expect(help.stdout).toMatch(/^npm run reencrypt-secrets/);
      for (const name of ['DATABASE_URL', 'ENCRYPTION_KEY', '--check', '--batch-size']) expect(help.stdout).toContain(name);
      const bogus = run(['--bogus']);
      expect(bogus.status).toBe(2);
      expect(bogus.stderr).toMatch(/^reencrypt-secrets: Unknown option '--bogus'/);
      const batch = run(['--batch-size', '0']);
      expect(batch.status).toBe(2);
      expect(batch.stderr).toMatch(/^reencrypt-secrets: --batch-size must be a whole number from 1 to 10000/);
    },
  );
});
