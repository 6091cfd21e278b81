import { z } from 'zod';

/** A Grafana dashboard UID: up to 40 characters of letters, digits, - and _. */
export const DashboardUidSchema = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,40}$/, 'expected a Grafana dashboard UID (1-40 letters, digits, - or _)');
export const DashboardNameSchema = z.string().trim().min(1).max(255);

export const GroupDashboardSchema = z.object({
  group_id: z.uuid(),
  dashboard_uid: z.string(),
  dashboard_name: z.string().nullable(),
  created_at: z.string(),
});
