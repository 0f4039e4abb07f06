// A small parser for the Prometheus text exposition format (what prom-client
// serves on /metrics): enough to turn every node's metrics into JSON.
export interface Sample {
  labels: Record<string, string>;
  value: number;
}

export type MetricFamilies = Map<string, Sample[]>;

const LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

export function parsePrometheus(text: string): MetricFamilies {
  const out: MetricFamilies = new Map();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = LINE.exec(line);
    if (!m) continue;
    const labels: Record<string, string> = {};
    if (m[3]) for (const l of m[3].matchAll(LABEL)) labels[l[1]!] = l[2]!.replace(/\\(.)/g, '$1');
    const value = m[4] === 'NaN' ? NaN : m[4] === '+Inf' ? Infinity : m[4] === '-Inf' ? -Infinity : Number(m[4]);
    const list = out.get(m[1]!) ?? [];
    list.push({ labels, value });
    out.set(m[1]!, list);
  }
  return out;
}

/** Sum of every sample of a metric, optionally filtered by labels. */
export function sumOf(f: MetricFamilies, name: string, where: Record<string, string | RegExp> = {}): number | null {
  const samples = f.get(name);
  if (!samples) return null;
  let total = 0;
  let any = false;
  for (const s of samples) {
    const ok = Object.entries(where).every(([k, v]) => (typeof v === 'string' ? s.labels[k] === v : v.test(s.labels[k] ?? '')));
    if (ok) {
      total += s.value;
      any = true;
    }
  }
  return any ? total : null;
}

export function maxOf(f: MetricFamilies, name: string): number | null {
  const samples = f.get(name);
  if (!samples || samples.length === 0) return null;
  return Math.max(...samples.map((s) => s.value));
}
