// The 'shard' role's settings (NodeConfig.settings, built in core/specs.ts).
import { z } from 'zod';
import { REPLICATION_MODES } from '../../core/topology.js';

export const ShardSettingsSchema = z.object({
  shard: z.number().int().min(1),
  replication: z.enum(REPLICATION_MODES),
  /** Group commit tuning (defaults suit one machine; see vote-batcher.ts). */
  maxBatch: z.number().int().min(1).max(10_000).optional(),
  maxInFlight: z.number().int().min(1).max(64).optional(),
  maxQueued: z.number().int().min(1).max(1_000_000).optional(),
});
export type ShardSettings = z.infer<typeof ShardSettingsSchema>;

export function parseShardSettings(raw: unknown): ShardSettings {
  const r = ShardSettingsSchema.safeParse(raw ?? {});
  if (!r.success) {
    throw new Error(`shard settings are invalid: ${r.error.issues.map((i) => `${i.path.join('.') || '(settings)'}: ${i.message}`).join('; ')}`);
  }
  return r.data;
}
