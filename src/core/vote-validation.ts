// What a valid vote is, and the messages for the ones that are not. Pure; the
// shard service answers 400 with these messages, the CLI exits 2 with them.
//
// voterId: a whole number within the topology's voterIds range. In JSON it is
//   a number (42); text (a URL segment, a CLI argument) must be plain decimal
//   digits ("42"). Floats, strings in JSON, signs, exponents, empty values and
//   numbers past the range are refused.
// choice: a name on the ballot, matched case-insensitively with surrounding
//   spaces ignored ("protest VOTE"), or the 1-based position on the ballot
//   (2, or "2" as text). A name wins over a position if a ballot name is
//   itself a number. Stored as the position (smallint 1..N).

export interface VoteRules {
  ballot: readonly string[];
  voterIds: { min: number; max: number };
}

export interface ValidVote {
  voterId: number;
  /** 1-based position on the ballot. */
  choice: number;
}

export type Checked<T> = { ok: true; value: T } | { ok: false; problem: string };

/** Longest text accepted where a voter id or a choice is expected, before any parsing. */
export const MAX_FIELD_CHARS = 128;

const DIGITS = /^[0-9]+$/;

function show(v: unknown): string {
  let s: string;
  try {
    s = typeof v === 'string' ? JSON.stringify(v) : typeof v === 'bigint' ? `${v}` : (JSON.stringify(v) ?? String(v));
  } catch {
    s = String(v);
  }
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

function rangeText(r: VoteRules['voterIds']): string {
  return `${r.min}..${r.max}`;
}

function checkRange(id: number, rules: VoteRules, shown: string): Checked<number> {
  if (id < rules.voterIds.min || id > rules.voterIds.max) {
    return { ok: false, problem: `voterId: ${shown} is outside the voter id range ${rangeText(rules.voterIds)}` };
  }
  return { ok: true, value: id };
}

/** A voter id from a JSON value: a whole number in range. */
export function checkVoterId(v: unknown, rules: VoteRules): Checked<number> {
  if (v === undefined) return { ok: false, problem: 'voterId: missing (send {"voterId": <whole number>, "choice": ...})' };
  if (v === null) return { ok: false, problem: 'voterId: must be a whole number, not null' };
  if (typeof v === 'string') {
    return { ok: false, problem: `voterId: must be a JSON number, not the string ${show(v)} (write 42, not "42")` };
  }
  if (typeof v !== 'number') return { ok: false, problem: `voterId: must be a whole number, not ${Array.isArray(v) ? 'a list' : typeof v}` };
  if (!Number.isFinite(v)) return { ok: false, problem: 'voterId: must be a finite whole number' };
  if (!Number.isInteger(v)) return { ok: false, problem: `voterId: ${show(v)} is not a whole number` };
  if (!Number.isSafeInteger(v)) return { ok: false, problem: `voterId: ${show(v)} is too large (the range is ${rangeText(rules.voterIds)})` };
  return checkRange(v, rules, String(v));
}

/** The form of a voter id in text, before its range is known: null when it is digits of sane length. */
export function voterIdTextProblem(text: string): string | null {
  const t = text.trim();
  if (t === '') return 'voterId: empty (give a whole number such as 42)';
  if (t.length > MAX_FIELD_CHARS) return `voterId: ${t.length} characters is absurd for a voter id`;
  if (!DIGITS.test(t)) return `voterId: ${show(t)} is not a whole number (digits 0-9 only)`;
  return null;
}

/** A voter id from text (URL segment, CLI argument): decimal digits only. */
export function parseVoterIdText(text: string, rules: VoteRules): Checked<number> {
  const t = text.trim();
  const form = voterIdTextProblem(t);
  if (form) return { ok: false, problem: form };
  // Leading zeros are harmless ("007" is 7); length decides "absurd" before Number() rounds.
  const digits = t.replace(/^0+(?=\d)/, '');
  if (digits.length > 16) return { ok: false, problem: `voterId: ${show(t)} is outside the voter id range ${rangeText(rules.voterIds)}` };
  const id = Number(digits);
  if (!Number.isSafeInteger(id)) return { ok: false, problem: `voterId: ${show(t)} is outside the voter id range ${rangeText(rules.voterIds)}` };
  return checkRange(id, rules, digits);
}

function ballotText(ballot: readonly string[]): string {
  return `${ballot.join(', ')} (or 1-${ballot.length})`;
}

function choiceByName(name: string, ballot: readonly string[]): number | null {
  const k = name.trim().toLowerCase();
  const i = ballot.findIndex((c) => c.trim().toLowerCase() === k);
  return i >= 0 ? i + 1 : null;
}

/** A choice from a JSON value: a ballot name (case-insensitive) or its 1-based position. */
export function checkChoice(v: unknown, rules: VoteRules): Checked<number> {
  const n = rules.ballot.length;
  if (v === undefined) return { ok: false, problem: `choice: missing; choose one of ${ballotText(rules.ballot)}` };
  if (typeof v === 'number') {
    if (Number.isInteger(v) && v >= 1 && v <= n) return { ok: true, value: v };
    return { ok: false, problem: `choice: ${show(v)} is not a position on the ballot (1-${n}); choose one of ${ballotText(rules.ballot)}` };
  }
  if (typeof v !== 'string') return { ok: false, problem: `choice: must be a ballot name or its position, not ${v === null ? 'null' : Array.isArray(v) ? 'a list' : typeof v}` };
  return parseChoiceText(v, rules);
}

/** A choice from text (CLI argument, JSON string): a ballot name or a position as digits. */
export function parseChoiceText(text: string, rules: VoteRules): Checked<number> {
  const n = rules.ballot.length;
  if (text.trim() === '') return { ok: false, problem: `choice: empty; choose one of ${ballotText(rules.ballot)}` };
  if (text.length > MAX_FIELD_CHARS) return { ok: false, problem: `choice: ${text.length} characters is not a ballot name; choose one of ${ballotText(rules.ballot)}` };
  const byName = choiceByName(text, rules.ballot);
  if (byName !== null) return { ok: true, value: byName };
  const t = text.trim();
  if (DIGITS.test(t) && t.length <= 3) {
    const i = Number(t);
    if (i >= 1 && i <= n) return { ok: true, value: i };
    return { ok: false, problem: `choice: ${i} is not a position on the ballot (1-${n}); choose one of ${ballotText(rules.ballot)}` };
  }
  return { ok: false, problem: `choice: ${show(text)} is not on the ballot; choose one of ${ballotText(rules.ballot)}` };
}

/** A whole vote from a JSON value; every problem at once. */
export function checkVote(body: unknown, rules: VoteRules): { ok: true; value: ValidVote } | { ok: false; problems: string[] } {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) {
    return { ok: false, problems: [`vote: must be a JSON object {"voterId": <whole number>, "choice": <name or 1-${rules.ballot.length}>}, not ${body === null ? 'null' : Array.isArray(body) ? 'a list' : typeof body}`] };
  }
  const o = body as Record<string, unknown>;
  const problems: string[] = [];
  const extra = Object.keys(o).filter((k) => k !== 'voterId' && k !== 'choice');
  if (extra.length > 0) problems.push(`${extra.slice(0, 3).map((k) => show(k)).join(', ')}: unknown field${extra.length > 1 ? 's' : ''} (a vote has only voterId and choice)`);
  const id = checkVoterId(o.voterId, rules);
  const choice = checkChoice(o.choice, rules);
  if (!id.ok) problems.push(id.problem);
  if (!choice.ok) problems.push(choice.problem);
  if (problems.length > 0 || !id.ok || !choice.ok) return { ok: false, problems };
  return { ok: true, value: { voterId: id.value, choice: choice.value } };
}

/** The ballot name of a stored choice (1-based), or "#n" if the ballot has no such position. */
export function choiceName(choice: number, ballot: readonly string[]): string {
  return ballot[choice - 1] ?? `#${choice}`;
}
