// Which voter votes for what, reproducibly: voter ids are spread over the id
// space by a permutation (i * stride mod N, stride coprime to N), so
// consecutive requests hit different shards, and a share `duplicates` of the
// requests are repeat voters (an id already used, maybe another choice), which
// the cluster must refuse with "already voted" and the first choice kept.
export interface WorkloadOptions {
  /** Voter ids are drawn from [minId, minId + voters). */
  minId: number;
  voters: number;
  duplicates: number;
  choices: number;
  seed: number;
}

export interface PlannedVote {
  voterId: number;
  /** 1-based ballot position. */
  choice: number;
  /** True when this voter was already used by an earlier request. */
  repeat: boolean;
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}

/** mulberry32: a tiny seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Workload {
  private readonly rnd: () => number;
  private readonly stride: number;
  private next = 0;
  private readonly used: number[] = [];

  constructor(private readonly o: WorkloadOptions) {
    if (o.voters < 1) throw new Error('workload: at least one voter');
    this.rnd = prng(o.seed);
    // A stride near N/phi spreads consecutive ids; nudge it until coprime with N.
    let s = Math.max(1, Math.floor(o.voters * 0.6180339887)) % o.voters || 1;
    while (gcd(s, o.voters) !== 1) s = (s + 1) % o.voters || 1;
    this.stride = s;
  }

  /** Fresh voters left before every id in the space was used once. */
  get freshLeft(): number {
    return this.o.voters - this.next;
  }

  take(): PlannedVote {
    const choice = 1 + Math.floor(this.rnd() * this.o.choices);
    const wantRepeat = this.used.length > 0 && (this.rnd() < this.o.duplicates || this.next >= this.o.voters);
    if (wantRepeat) {
      const voterId = this.used[Math.floor(this.rnd() * this.used.length)]!;
      return { voterId, choice, repeat: true };
    }
    const voterId = this.o.minId + ((this.next++ * this.stride) % this.o.voters);
    this.used.push(voterId);
    return { voterId, choice, repeat: false };
  }
}
