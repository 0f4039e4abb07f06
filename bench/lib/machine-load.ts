// What the machine was doing while a figure was measured: on a shared
// machine a benchmark figure means little without the load next to it.
import { availableParallelism, cpus, loadavg } from 'node:os';

export interface LoadSample {
  /** 1-minute load average when the measurement ended. */
  load1: number;
  load5: number;
  cores: number;
}

export function sampleLoad(): LoadSample {
  const [l1, l5] = loadavg();
  return { load1: Math.round(l1! * 100) / 100, load5: Math.round(l5! * 100) / 100, cores: availableParallelism() };
}

export function describeMachine(): { cores: number; cpuModel: string; node: string; platform: string } {
  return { cores: availableParallelism(), cpuModel: cpus()[0]?.model ?? 'unknown', node: process.version, platform: `${process.platform}-${process.arch}` };
}
