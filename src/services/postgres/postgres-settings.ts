// The 'postgres' role's settings (NodeConfig.settings, built in core/specs.ts).
import { z } from 'zod';

export const PostgresSettingsSchema = z.object({
  shard: z.number().int().min(1),
  /** 1-based instance within the shard; instance 1 starts as the primary. */
  instance: z.number().int().min(1),
  /** Where PostgreSQL listens. */
  pgListen: z.object({ host: z.string().min(1), port: z.number().int().min(1).max(65535) }),
  /** How the cluster reaches it, "host:port". */
  pgAdvertise: z.string().regex(/^[^:\s]+:\d{1,5}$/),
  /** Extra postgresql.conf settings (tests and tuning). */
  postgresConf: z.record(z.string(), z.union([z.string(), z.number()])).optional(),
});
export type PostgresSettings = z.infer<typeof PostgresSettingsSchema>;

export function parsePostgresSettings(raw: unknown): PostgresSettings {
  const r = PostgresSettingsSchema.safeParse(raw ?? {});
  if (!r.success) {
    throw new Error(`postgres settings are invalid: ${r.error.issues.map((i) => `${i.path.join('.') || '(settings)'}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}
