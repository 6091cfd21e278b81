import { z } from 'zod';

export const GroupSchema = z.object({
  id: z.uuid(),
  name: z.string(),
  description: z.string().nullable(),
  color: z.string().nullable(),
  icon: z.string().nullable(),
  display_order: z.number().int().nullable(),
  collector_count: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
});
export type Group = z.infer<typeof GroupSchema>;

export const GroupFields = {
  name: z.string().trim().min(1, 'is required').max(255, 'must be at most 255 characters'),
  description: z.string().max(1000, 'must be at most 1000 characters').nullable(),
  color: z
    .string()
    .regex(/^#[0-9A-Fa-f]{6}$/, 'expected a colour as #RRGGBB')
    .nullable(),
  icon: z
    .string()
    .regex(/^[a-z0-9-]{1,50}$/, 'expected an icon name: lower-case letters, digits and -, at most 50')
    .nullable(),
  display_order: z.number().int('expected a whole number').min(0).max(1_000_000).nullable(),
};

/** Groups with their number of (not deleted) collectors. */
export const GROUP_SELECT = `SELECT g.id, g.name, g.description, g.color, g.icon, g.display_order, g.created_at, g.updated_at,
       (SELECT count(*) FROM collectors c WHERE c.group_id = g.id AND c.deleted_at IS NULL)::int AS collector_count
  FROM collector_groups g`;

export function toGroup(r: Record<string, unknown>): Group {
  return GroupSchema.parse({
    ...r,
    created_at: (r.created_at as Date).toISOString(),
    updated_at: (r.updated_at as Date).toISOString(),
  });
}
