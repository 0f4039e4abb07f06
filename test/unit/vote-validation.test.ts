// What a valid vote is: voter ids (whole numbers in range; JSON numbers or
// digit text) and choices (ballot names, case-insensitive, or positions), with
// messages that name the problem.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DEFAULT_BALLOT } from '../../src/core/topology.js';
import {
  checkChoice,
  checkVote,
  checkVoterId,
  choiceName,
  parseChoiceText,
  parseVoterIdText,
  voterIdTextProblem,
  type VoteRules,
} from '../../src/core/vote-validation.js';

const rules: VoteRules = { ballot: DEFAULT_BALLOT, voterIds: { min: 1, max: 9_999_999_999 } };

function problem(r: { ok: boolean; problem?: string }): string {
  expect(r.ok).toBe(false);
  return (r as { problem: string }).problem;
}

describe('voter ids from JSON', () => {
  it('accepts every whole number in range', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9_999_999_999 }), (id) => {
        const r = checkVoterId(id, rules);
        return r.ok && r.value === id;
      }),
    );
  });

  it('refuses floats, strings, negatives, out-of-range, absurd and non-numbers, naming the problem', () => {
    expect(problem(checkVoterId(undefined, rules))).toMatch(/^voterId: missing/);
    expect(problem(checkVoterId(null, rules))).toMatch(/not null/);
    expect(problem(checkVoterId('42', rules))).toMatch(/JSON number, not the string "42"/);
    expect(problem(checkVoterId('', rules))).toMatch(/not the string ""/);
    expect(problem(checkVoterId(4.5, rules))).toMatch(/4.5 is not a whole number/);
    expect(problem(checkVoterId(-3, rules))).toMatch(/-3 is outside the voter id range 1..9999999999/);
    expect(problem(checkVoterId(0, rules))).toMatch(/outside/);
    expect(problem(checkVoterId(10_000_000_000, rules))).toMatch(/outside/);
    expect(problem(checkVoterId(1e300, rules))).toMatch(/too large/);
    expect(problem(checkVoterId(Number.NaN, rules))).toMatch(/finite/);
    expect(problem(checkVoterId(Infinity, rules))).toMatch(/finite/);
    expect(problem(checkVoterId([1], rules))).toMatch(/not a list/);
    expect(problem(checkVoterId({}, rules))).toMatch(/not object/);
    expect(problem(checkVoterId(true, rules))).toMatch(/not boolean/);
  });

  it('refuses every non-integer and every out-of-range number (property)', () => {
    fc.assert(
      fc.property(fc.double({ noNaN: true }), (x) => {
        const r = checkVoterId(x, rules);
        const valid = Number.isInteger(x) && x >= 1 && x <= 9_999_999_999;
        return r.ok === valid;
      }),
      { numRuns: 3000 },
    );
  });
});

describe('voter ids from text', () => {
  it('round-trips every id in range, leading zeros and spaces allowed', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 9_999_999_999 }), fc.nat(3), (id, zeros) => {
        const r = parseVoterIdText(` ${'0'.repeat(zeros)}${id} `, rules);
        return r.ok && r.value === id;
      }),
    );
  });

  it('refuses empty, signs, decimals, exponents, hex and absurd lengths', () => {
    expect(problem(parseVoterIdText('', rules))).toMatch(/empty/);
    expect(problem(parseVoterIdText('   ', rules))).toMatch(/empty/);
    expect(problem(parseVoterIdText('-5', rules))).toMatch(/not a whole number/);
    expect(problem(parseVoterIdText('+5', rules))).toMatch(/not a whole number/);
    expect(problem(parseVoterIdText('4.0', rules))).toMatch(/not a whole number/);
    expect(problem(parseVoterIdText('1e5', rules))).toMatch(/not a whole number/);
    expect(problem(parseVoterIdText('0x10', rules))).toMatch(/not a whole number/);
    expect(problem(parseVoterIdText('99999999999999999999', rules))).toMatch(/outside the voter id range/);
    expect(problem(parseVoterIdText('9'.repeat(500), rules))).toMatch(/500 characters is absurd/);
    expect(problem(parseVoterIdText('0', rules))).toMatch(/outside/);
    expect(voterIdTextProblem('12a')).toMatch(/digits 0-9 only/);
    expect(voterIdTextProblem('12')).toBeNull();
  });
});

describe('choices', () => {
  it('accepts ballot names in any case with spaces around, and positions 1..N', () => {
    expect(checkChoice('Democrats', rules)).toEqual({ ok: true, value: 1 });
    expect(checkChoice('  republicans ', rules)).toEqual({ ok: true, value: 2 });
    expect(checkChoice('PROTEST VOTE', rules)).toEqual({ ok: true, value: 3 });
    expect(checkChoice(3, rules)).toEqual({ ok: true, value: 3 });
    expect(checkChoice('2', rules)).toEqual({ ok: true, value: 2 });
    expect(parseChoiceText('1', rules)).toEqual({ ok: true, value: 1 });
  });

  it('a ballot name that is itself a number wins over a position', () => {
    const odd: VoteRules = { ...rules, ballot: ['Alpha', '1', 'Gamma'] };
    expect(parseChoiceText('1', odd)).toEqual({ ok: true, value: 2 });
    expect(parseChoiceText('3', odd)).toEqual({ ok: true, value: 3 });
  });

  it('refuses unknown names, positions off the ballot, empty and non-strings, listing the ballot', () => {
    expect(problem(checkChoice('Greens', rules))).toBe('choice: "Greens" is not on the ballot; choose one of Democrats, Republicans, Protest vote (or 1-3)');
    expect(problem(checkChoice(0, rules))).toMatch(/0 is not a position on the ballot \(1-3\)/);
    expect(problem(checkChoice(4, rules))).toMatch(/4 is not a position/);
    expect(problem(checkChoice(1.5, rules))).toMatch(/1.5 is not a position/);
    expect(problem(checkChoice('4', rules))).toMatch(/4 is not a position/);
    expect(problem(checkChoice('', rules))).toMatch(/empty/);
    expect(problem(checkChoice(undefined, rules))).toMatch(/missing/);
    expect(problem(checkChoice(null, rules))).toMatch(/not null/);
    expect(problem(checkChoice(['Democrats'], rules))).toMatch(/not a list/);
    expect(problem(checkChoice('x'.repeat(1000), rules))).toMatch(/1000 characters/);
  });

  it('no string outside the ballot is accepted (property)', () => {
    fc.assert(
      fc.property(fc.string(), (s) => {
        const r = checkChoice(s, rules);
        const byName = DEFAULT_BALLOT.some((b) => b.toLowerCase() === s.trim().toLowerCase());
        const byIndex = /^\s*0*[1-3]\s*$/.test(s) && s.trim().length <= 3;
        return r.ok === (byName || byIndex);
      }),
      { numRuns: 3000 },
    );
  });

  it('names stored choices', () => {
    expect(choiceName(2, DEFAULT_BALLOT)).toBe('Republicans');
    expect(choiceName(9, DEFAULT_BALLOT)).toBe('#9');
  });
});

describe('whole votes', () => {
  it('returns every problem at once', () => {
    const r = checkVote({ voterId: 'x', choice: 'Greens', extra: 1 }, rules);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems).toHaveLength(3);
    expect(r.problems[0]).toMatch(/"extra": unknown field/);
    expect(r.problems[1]).toMatch(/^voterId:/);
    expect(r.problems[2]).toMatch(/^choice:/);
  });

  it('refuses non-objects', () => {
    for (const v of [null, [], 'vote', 42]) {
      const r = checkVote(v, rules);
      expect(r.ok).toBe(false);
    }
  });

  it('accepts a good vote', () => {
    expect(checkVote({ voterId: 42, choice: 'democrats' }, rules)).toEqual({ ok: true, value: { voterId: 42, choice: 1 } });
  });
});
