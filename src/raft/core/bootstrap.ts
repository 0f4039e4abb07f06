// How a brand-new group starts: every initial member writes the same log, one
// committed addVoter entry per initial voter at term 1. Keeping the initial
// membership in the log (rather than only in a snapshot at index 0) matters:
// a node added later replays the log from index 1 and so learns the whole
// membership. Without it, a joining node would see only the changes after
// bootstrap and could believe it is the only voter (the simulator found
// exactly that: a promoted learner elected itself and lost committed entries).
import { encodeConfChange } from './conf-change.js';
import { EntryType, type Entry, type HardState, type NodeId } from './types.js';

export function bootstrapLog(
  voters: NodeId[],
  addresses: Record<NodeId, string> = {},
): { entries: Entry[]; hardState: HardState } {
  if (voters.length === 0) throw new Error('bootstrap: at least one voter is needed');
  if (new Set(voters).size !== voters.length) throw new Error('bootstrap: duplicate voter ids');
  const entries: Entry[] = voters.map((node, i) => ({
    term: 1,
    index: i + 1,
    type: EntryType.ConfChange,
    data: encodeConfChange({ type: 'addVoter', node, ...(addresses[node] ? { address: addresses[node] } : {}) }),
  }));
  return { entries, hardState: { term: 1, vote: null, commit: entries.length } };
}
