// A self-contained HTML page for a bench run (no scripts, no external files):
// throughput and latency over time as inline SVG with the injected faults
// marked, the summary and the verification; for a matrix, the original's
// Table 1 drawn against ours.
import type { BenchDoc } from './vote-bench.js';
import type { MatrixDoc } from './matrix.js';

const esc = (s: unknown) =>
  String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

interface Series {
  name: string;
  color: string;
  points: [number, number][];
}

interface Marker {
  x: number;
  label: string;
}

function lineChart(title: string, yLabel: string, series: Series[], markers: Marker[] = [], opts: { logY?: boolean } = {}): string {
  const W = 860;
  const H = 260;
  const L = 60;
  const R = 20;
  const T = 30;
  const B = 40;
  const xs = series.flatMap((s) => s.points.map((p) => p[0]));
  const ys = series.flatMap((s) => s.points.map((p) => p[1])).filter((y) => Number.isFinite(y));
  const xMax = Math.max(1, ...xs, ...markers.map((m) => m.x));
  const yMaxRaw = Math.max(1, ...ys);
  const yMax = opts.logY ? Math.pow(10, Math.ceil(Math.log10(yMaxRaw))) : niceCeil(yMaxRaw);
  const yMin = opts.logY ? Math.max(0.1, Math.pow(10, Math.floor(Math.log10(Math.max(0.1, Math.min(...ys, yMaxRaw)))))) : 0;
  const sx = (x: number) => L + (x / xMax) * (W - L - R);
  const sy = (y: number) => {
    if (opts.logY) {
      const v = Math.log10(Math.max(yMin, y));
      return H - B - ((v - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * (H - T - B);
    }
    return H - B - (y / yMax) * (H - T - B);
  };
  const ticks = opts.logY ? logTicks(yMin, yMax) : [0, yMax / 4, yMax / 2, (3 * yMax) / 4, yMax];
  let svg = `<svg viewBox="0 0 ${W} ${H}" width="100%" role="img" aria-label="${esc(title)}">`;
  svg += `<text x="${L}" y="18" class="t">${esc(title)}</text>`;
  for (const t of ticks) {
    svg += `<line x1="${L}" x2="${W - R}" y1="${sy(t)}" y2="${sy(t)}" class="g"/><text x="${L - 6}" y="${sy(t) + 4}" class="a" text-anchor="end">${fmt(t)}</text>`;
  }
  for (let i = 0; i <= 5; i++) {
    const x = (xMax * i) / 5;
    svg += `<text x="${sx(x)}" y="${H - B + 16}" class="a" text-anchor="middle">${fmt(x)}s</text>`;
  }
  svg += `<text x="14" y="${(H - B + T) / 2}" class="a" transform="rotate(-90 14 ${(H - B + T) / 2})" text-anchor="middle">${esc(yLabel)}</text>`;
  for (const m of markers) {
    svg += `<line x1="${sx(m.x)}" x2="${sx(m.x)}" y1="${T}" y2="${H - B}" class="m"/><text x="${sx(m.x) + 3}" y="${T + 10}" class="ml">${esc(m.label)}</text>`;
  }
  for (const s of series) {
    if (s.points.length === 0) continue;
    const d = s.points.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
    svg += `<path d="${d}" fill="none" stroke="${s.color}" stroke-width="2"/>`;
  }
  svg += series.map((s, i) => `<rect x="${W - R - 150}" y="${T + 4 + i * 16}" width="10" height="10" fill="${s.color}"/><text x="${W - R - 135}" y="${T + 13 + i * 16}" class="a">${esc(s.name)}</text>`).join('');
  return `${svg}</svg>`;
}

function niceCeil(v: number): number {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function logTicks(min: number, max: number): number[] {
  const out: number[] = [];
  for (let v = min; v <= max * 1.001; v *= 10) out.push(v);
  return out;
}

function fmt(v: number): string {
  if (v >= 1000) return `${Math.round(v / 100) / 10}k`;
  if (v >= 10 || v === 0) return String(Math.round(v));
  return String(Math.round(v * 100) / 100);
}

function table(head: string[], rows: unknown[][]): string {
  return `<table><tr>${head.map((h) => `<th>${esc(h)}</th>`).join('')}</tr>${rows.map((r) => `<tr>${r.map((c) => `<td>${esc(c)}</td>`).join('')}</tr>`).join('')}</table>`;
}

const STYLE = `body{font:14px system-ui,sans-serif;margin:24px;max-width:960px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f4f4f4}
.t{font:600 13px system-ui}.a{font:11px system-ui;fill:#555}.g{stroke:#eee}.m{stroke:#d33;stroke-dasharray:4 3}.ml{font:10px system-ui;fill:#d33}
.ok{color:#180}.bad{color:#c00;font-weight:600}code{background:#f4f4f4;padding:1px 4px}`;

function page(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)}</title><style>${STYLE}</style></head><body><h1>${esc(title)}</h1>${body}</body></html>\n`;
}

export function renderBenchHtml(doc: BenchDoc | MatrixDoc): string {
  return doc.schema === 'dvote.bench.matrix/v1' ? matrixHtml(doc) : benchHtml(doc);
}

function benchHtml(d: BenchDoc): string {
  const markers = d.faults.flatMap((f) => [
    { x: f.at / 1000, label: `${f.kind} ${f.target}` },
    ...(f.restoredAt !== undefined ? [{ x: f.restoredAt / 1000, label: `restored` }] : []),
  ]);
  const thr = lineChart('Votes per second', 'votes/s', [{ name: 'acknowledged + refused', color: '#1565c0', points: d.timeline.map((p) => [p.t, p.okUnits]) }], markers);
  const lat = lineChart(
    'Latency per second (ms, log scale)',
    'ms',
    [
      { name: 'p50', color: '#2e7d32', points: d.timeline.filter((p) => p.ok > 0).map((p) => [p.t, p.p50]) },
      { name: 'p99', color: '#ef6c00', points: d.timeline.filter((p) => p.ok > 0).map((p) => [p.t, p.p99]) },
      { name: 'max', color: '#9e9e9e', points: d.timeline.filter((p) => p.ok > 0).map((p) => [p.t, p.max]) },
    ],
    markers,
    { logY: true },
  );
  const v = d.verify;
  const verdict = v.ok ? '<p class="ok">Verified: every acknowledged vote is on every copy exactly once; tallies agree.</p>' : '<p class="bad">Verification failed.</p>';
  const cfg = d.config;
  const summary = table(
    ['acknowledged', 'already voted', 'failed', 'votes/s', 'p50 ms', 'p90 ms', 'p99 ms', 'p99.9 ms', 'max ms'],
    [[d.votes.acknowledged, d.votes.rejected, d.votes.failed, d.throughput.votesPerSec, d.latencyMs.p50, d.latencyMs.p90, d.latencyMs.p99, d.latencyMs.p999, d.latencyMs.max]],
  );
  const faults = d.faults.length
    ? `<h2>Faults</h2>${table(['fault', 'target', 'at s', 'restored s', 'first vote after (ms)'], d.faults.map((f) => [f.kind, f.target, (f.at / 1000).toFixed(1), f.restoredAt !== undefined ? (f.restoredAt / 1000).toFixed(1) : '-', f.recoveryMs ?? f.error ?? '-']))}`
    : '';
  const copies =
    'copies' in v
      ? `<h2>Verification</h2>${verdict}${table(['lost', 'lost on primary', 'duplicated', 'divergent', 'unacknowledged but stored', 'settled s'], [[v.lost, v.lostOnPrimary, v.duplicated, v.divergent, v.unacknowledgedStored, (v.settledMs / 1000).toFixed(1)]])}${table(
          ['shard', 'copy', 'role', 'votes', 'missing', 'wrong choice', 'extra'],
          v.copies.map((c) => [c.shard, c.node, c.role, c.votes ?? c.error ?? '-', c.missing, c.wrongChoice, c.extra]),
        )}`
      : '<h2>Verification</h2><p>skipped</p>';
  const body = `<p>${esc(cfg.replication)} replication, ${cfg.shards} shard(s) × (primary + ${cfg.replicas} replicas), ${cfg.brokers} broker(s), ${esc(d.runtime)} runtime;
  ${cfg.mode.kind === 'closed' ? `closed loop, ${cfg.mode.concurrency} in flight` : `open loop at ${cfg.mode.rate} requests/s (latency from the intended send time)`}, ${cfg.batch} vote(s) per request, ${(cfg.duplicates * 100).toFixed(1)}% repeat voters. Started ${esc(d.startedAt)}.</p>
  ${summary}${thr}${lat}${faults}${copies}
  <h2>Errors</h2>${Object.keys(d.errorsByKind).length ? table(['kind', 'count'], Object.entries(d.errorsByKind)) : '<p>none</p>'}`;
  return page(`dvote bench: ${d.throughput.votesPerSec} votes/s, p99 ${d.latencyMs.p99} ms`, body);
}

function matrixHtml(m: MatrixDoc): string {
  const sections: string[] = [];
  for (const mode of m.spec.modes) {
    const rows = m.rows.filter((r) => r.replication === mode);
    const series: Series[] = [
      { name: 'original (sequential)', color: '#9e9e9e', points: [] },
      { name: 'dvote sequential', color: '#1565c0', points: [] },
      { name: `dvote ${m.concurrency} in flight`, color: '#2e7d32', points: [] },
    ];
    // x = replicas (+ a small offset per size is unreadable); one chart per size instead
    const charts: string[] = [];
    for (const label of [...new Set(rows.map((r) => r.label))]) {
      const per = rows.filter((r) => r.label === label);
      const s = series.map((x) => ({ ...x, points: [] as [number, number][] }));
      for (const r of per) {
        if (r.originalSeconds !== null && r.loop === 'sequential') s[0]!.points.push([r.replicas, r.originalSeconds]);
        s[r.loop === 'sequential' ? 1 : 2]!.points.push([r.replicas, r.seconds]);
      }
      charts.push(lineChart(`${label} votes, ${mode}: seconds by number of replicas (x axis; log y)`, 'seconds', s, [], { logY: true }).replace(/(\d+(\.\d+)?)s</g, '+$1<'));
    }
    sections.push(`<h2>${esc(mode)} replication</h2>${charts.join('')}`);
  }
  const t = table(
    ['votes', 'replication', 'replicas', 'loop', 'original s', 'dvote s', 'votes/s', 'p50 ms', 'p99 ms', 'verified'],
    m.rows.map((r) => [r.label, r.replication, r.replicas, r.loop, r.originalSeconds ?? '-', r.seconds.toFixed(3), r.votesPerSec, r.p50, r.p99, r.verifyOk ? 'yes' : `NO (lost ${r.lost})`]),
  );
  return page('dvote bench --matrix: DisVote Table 1 and beyond', `<p>${esc(m.note)}</p>${t}${sections.join('')}`);
}
