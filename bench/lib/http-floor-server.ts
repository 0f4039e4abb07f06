// A vote service that stores nothing: fastify, POST /votes parsed and
// checked with the shard service's own validation, answered 201 with the
// same fields. Run by http-floor.ts in its own process (one per shard, like
// the shard services) to measure what one HTTP request per vote costs on
// this machine before any replication happens.
import Fastify from 'fastify';
import { checkVote, choiceName, type VoteRules } from '../../src/core/vote-validation.js';

const rules: VoteRules = { ballot: ['alice', 'bob', 'carol'], voterIds: { min: 1, max: Number.MAX_SAFE_INTEGER } };
const app = Fastify({ logger: false });
app.post('/votes', async (req, reply) => {
  const c = checkVote(req.body, rules);
  if (!c.ok) return reply.code(400).send({ error: c.problems.join('; ') });
  return reply.code(201).send({
    voterId: c.value.voterId,
    choice: choiceName(c.value.choice, rules.ballot),
    choiceIndex: c.value.choice,
    castAt: new Date().toISOString(),
    shard: 1,
    epoch: 1,
  });
});
await app.listen({ port: 0, host: '127.0.0.1' });
const addr = app.server.address();
process.send!({ port: typeof addr === 'object' && addr ? addr.port : 0 });
process.on('disconnect', () => process.exit(0));
