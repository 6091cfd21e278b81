import { z } from 'zod';
import { adminProcedure } from '../../trpc/init';
import { bulkImport as runBulkImport } from '../../bulk/bulk-import';
import { BulkImportResultSchema } from '../../bulk/bulk-result';
import { actorOf } from '../../audit/actor';

export const BulkImportInputSchema = z.object({
  format: z.enum(['json', 'csv']),
  /** The file's text: a JSON array of register forms, or CSV with a header row of field names (tags `;`-separated). */
  content: z.string().min(1, 'is empty'),
  dry_run: z.boolean().default(false),
  /** per_row: import the valid rows, report the others; all_or_nothing: import only if every row is valid. */
  mode: z.enum(['per_row', 'all_or_nothing']).default('per_row'),
  /** Test each valid row's connection first (bounded concurrency); a failed test fails the row. */
  test_connections: z.boolean().default(false),
});

export const bulkImport = adminProcedure
  .input(BulkImportInputSchema)
  .output(BulkImportResultSchema)
  .mutation(({ ctx, input }) =>
    runBulkImport(
      ctx.deps,
      { ...actorOf(ctx), id: ctx.user.id },
      {
        format: input.format,
        content: input.content,
        dryRun: input.dry_run,
        mode: input.mode,
        testConnections: input.test_connections,
      },
    ),
  );
