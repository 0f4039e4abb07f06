// Read the topology: an optional YAML file (-f) with flags on top, validated
// as a whole. Problems come back all at once; nothing is started before.
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { DvoteError } from '../core/errors.js';
import { mergeTopology, validateTopology, type Topology } from '../core/topology.js';

export interface TopologyLoad {
  topology: Topology;
  warnings: string[];
  source: string;
}

export function loadTopology(file: string | undefined, flags: Record<string, unknown>): TopologyLoad {
  let doc: Record<string, unknown> = {};
  let source = 'defaults';
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new DvoteError('INVALID_INPUT', `cannot read topology file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, 'check the path (presets are in templates/topology/)');
    }
    const parsed = parseDocument(text, { prettyErrors: false });
    if (parsed.errors.length > 0) {
      const e = parsed.errors[0]!;
      throw new DvoteError('INVALID_TOPOLOGY', `${file} is not valid YAML: ${e.message.split('\n')[0]}`, 'fix the syntax (see templates/topology/default.yaml)');
    }
    const value = parsed.toJS() as unknown;
    if (value !== null && (typeof value !== 'object' || Array.isArray(value))) {
      throw new DvoteError('INVALID_TOPOLOGY', `${file} must be a mapping of keys to values`, 'see templates/topology/default.yaml');
    }
    doc = (value ?? {}) as Record<string, unknown>;
    source = file;
  }
  const merged = mergeTopology(doc, flags);
  const r = validateTopology(merged);
  if (!r.topology) {
    throw new DvoteError(
      'INVALID_TOPOLOGY',
      `the topology (${source}${Object.values(flags).some((v) => v !== undefined) ? ' + flags' : ''}) has ${r.errors.length} problem${r.errors.length === 1 ? '' : 's'}`,
      `fix ${r.errors.length === 1 ? 'it' : 'them'} and run again; nothing was started`,
      r.errors,
    );
  }
  return { topology: r.topology, warnings: r.warnings, source };
}

/** Parse a numeric flag, or explain. */
export function intFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  if (!/^-?\d+$/.test(v.trim())) throw new DvoteError('USAGE', `--${name} must be a whole number, not "${v}"`, `for example --${name} 3`);
  return Number(v);
}
