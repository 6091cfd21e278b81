import { z } from 'zod';

export const BulkRowResultSchema = z.object({
  /** 1-based position in the file (CSV: data rows after the header). */
  row: z.number().int(),
  name: z.string().nullable(),
  /** created; valid (dry run); not_imported (all-or-nothing aborted); error; skipped (duplicate). */
  status: z.enum(['created', 'valid', 'not_imported', 'error', 'skipped']),
  collector_id: z.uuid().nullable(),
  field: z.string().nullable(),
  reason: z.string().nullable(),
});
export type BulkRowResult = z.infer<typeof BulkRowResultSchema>;

export const BulkImportResultSchema = z.object({
  dry_run: z.boolean(),
  mode: z.enum(['per_row', 'all_or_nothing']),
  /** Whether anything was written. */
  committed: z.boolean(),
  total: z.number().int(),
  created: z.number().int(),
  errors: z.number().int(),
  skipped: z.number().int(),
  rows: z.array(BulkRowResultSchema),
  /** The new collectors' tokens, once: `name,collector_id,token,expires_at,central_api_url`. */
  tokens_csv: z.string().nullable(),
});
export type BulkImportResult = z.infer<typeof BulkImportResultSchema>;
