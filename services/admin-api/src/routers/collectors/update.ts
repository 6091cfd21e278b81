import { z } from 'zod';
import { AppError, CollectorTypeSchema, EnvironmentSchema } from '@pga/contracts';
import { isUniqueViolation, withTransaction } from '@pga/db';
import { adminProcedure } from '../../trpc/init';
import {
  CollectionIntervalSchema,
  HostSchema,
  NameSchema,
  PortSchema,
  QueryLimitSchema,
  SslCertificateSchema,
  SslModeInputSchema,
  TagsSchema,
  TargetFields,
} from '../../collectors/field-schemas';
import { CollectorSchema } from '../../collectors/collector-schema';
import { findCollector } from '../../collectors/collector-row';
import { lockCollector } from '../../collectors/lock-collector';
import { requirePasswordForRedirect } from '../../collectors/password-guard';
import { resolveGroupId } from '../../collectors/resolve-group';
import { setConfigVersion } from '../../collectors/after-commit';
import { MASKED, diffValues, writeAudit } from '../../audit/write-audit';
import { actorOf } from '../../audit/actor';

export const UpdateCollectorInputSchema = z.object({
  id: z.uuid(),
  name: NameSchema.optional(),
  type: CollectorTypeSchema.optional(),
  environment: EnvironmentSchema.optional(),
  group: z.string().trim().max(255).optional(),
  /** null removes the collector from its group. */
  group_id: z.uuid().nullable().optional(),
  description: z.string().max(1000, 'must be at most 1000 characters').nullable().optional(),
  host: HostSchema.optional(),
  port: PortSchema.optional(),
  database: TargetFields.database.optional(),
  username: TargetFields.username.optional(),
  password: TargetFields.password.optional(),
  ssl_mode: SslModeInputSchema.optional(),
  /** null removes the stored certificate. */
  ssl_certificate: SslCertificateSchema.nullable().optional(),
  collection_interval: CollectionIntervalSchema.optional(),
  query_limit: QueryLimitSchema.optional(),
  tags: TagsSchema.optional(),
});

/** Fields the collector receives in its config (CONTRACT.md): changing one bumps config_version. */
const CONFIG_FIELDS = [
  'type',
  'host',
  'port',
  'database',
  'username',
  'password',
  'ssl_mode',
  'ssl_certificate',
  'collection_interval',
  'query_limit',
];
const PLAIN_FIELDS = [
  'name',
  'type',
  'environment',
  'description',
  'host',
  'port',
  'database',
  'username',
  'ssl_mode',
  'collection_interval',
  'query_limit',
  'tags',
] as const;

/** Partial update; re-encrypts a changed password / certificate; audit holds old/new of changed fields only. */
export const update = adminProcedure
  .input(UpdateCollectorInputSchema)
  .output(CollectorSchema)
  .mutation(async ({ ctx, input }) => {
    const { deps } = ctx;
    let newVersion: number | undefined;
    try {
      await withTransaction(deps.pool, async (db) => {
        const row = await lockCollector(db, input.id);
        const decrypt = (ciphertext: unknown) => {
          if (typeof ciphertext !== 'string') return undefined;
          try {
            return deps.secretBox.decrypt(ciphertext, row.id);
          } catch {
            return undefined; // undecryptable: treated as a password to protect / a certificate that differs
          }
        };
        // The edge gives the stored password to the agent, which sends it to these settings: moving
        // it elsewhere or weakening its protection needs it typed in (the rule testConnection has).
        requirePasswordForRedirect(
          {
            type: row.type as string,
            host: row.host as string,
            port: row.port as number,
            ssl_mode: (row.ssl_mode as string | null) ?? 'prefer',
            ssl_certificate: input.ssl_certificate === undefined ? undefined : decrypt(row.ssl_certificate_encrypted),
          },
          input.password === undefined ? decrypt(row.password_encrypted) : input.password,
          input,
        );
        const before: Record<string, unknown> = { group_id: row.group_id };
        const after: Record<string, unknown> = {};
        for (const f of PLAIN_FIELDS) {
          before[f] = row[f];
          after[f] = input[f] === undefined ? row[f] : input[f];
        }
        after.group_id =
          input.group !== undefined || input.group_id !== undefined ? await resolveGroupId(db, input) : row.group_id;
        const changed = diffValues(before, after) ?? { oldValues: {}, newValues: {} };
        const secrets: Record<string, string | null> = {};
        if (input.password !== undefined) secrets.password_encrypted = deps.secretBox.encrypt(input.password, row.id);
        if (input.ssl_certificate !== undefined)
          secrets.ssl_certificate_encrypted =
            input.ssl_certificate === null ? null : deps.secretBox.encrypt(input.ssl_certificate, row.id);
        for (const [field, given] of [
          ['password', input.password],
          ['ssl_certificate', input.ssl_certificate],
        ] as const) {
          if (given === undefined) continue;
          changed.oldValues[field] = MASKED;
          changed.newValues[field] = given === null ? null : MASKED;
        }
        if (Object.keys(changed.newValues).length === 0) return;
        const bump = Object.keys(changed.newValues).some((f) => CONFIG_FIELDS.includes(f));
        const { rows } = await db.query<{ config_version: number }>(
          `UPDATE collectors SET name = $2, type = $3, environment = $4, description = $5, host = $6, port = $7, database = $8,
                  username = $9, ssl_mode = $10, collection_interval = $11, query_limit = $12, tags = $13, group_id = $14,
                  password_encrypted = coalesce($15, password_encrypted),
                  ssl_certificate_encrypted = CASE WHEN $16 THEN $17 ELSE ssl_certificate_encrypted END,
                  config_version = config_version + CASE WHEN $18 THEN 1 ELSE 0 END,
                  last_modified_by = $19, last_modified_at = now(), updated_at = now()
            WHERE id = $1 RETURNING config_version`,
          [
            row.id,
            after.name,
            after.type,
            after.environment,
            after.description,
            after.host,
            after.port,
            after.database,
            after.username,
            after.ssl_mode,
            after.collection_interval,
            after.query_limit,
            after.tags,
            after.group_id,
            secrets.password_encrypted ?? null,
            'ssl_certificate_encrypted' in secrets,
            secrets.ssl_certificate_encrypted ?? null,
            bump,
            ctx.user.id,
          ],
        );
        if (bump) newVersion = rows[0]!.config_version;
        await writeAudit(db, actorOf(ctx), {
          action: 'collector.updated',
          entityType: 'collector',
          collectorId: row.id,
          details: bump ? { config_version: newVersion } : null,
          ...changed,
        });
      });
    } catch (err) {
      if (isUniqueViolation(err, 'collectors_name_key'))
        throw new AppError('CONFLICT', `a collector named "${input.name}" already exists`, { field: 'name' });
      throw err;
    }
    if (newVersion !== undefined) await setConfigVersion(deps, input.id, newVersion);
    return (await findCollector(deps.pool, input.id))!;
  });
