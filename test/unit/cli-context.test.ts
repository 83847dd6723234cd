// The CLI's mapping from errors to exit codes and one-line messages (the processes themselves
// are tested in test/integration/cli*.test.ts).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AppendConditionFailedError } from '../../src/append-condition.ts';
import { AppendOutcomeUnknownError, EventStoreDatabaseError, InvalidInputError } from '../../src/errors.ts';
import { Query } from '../../src/query.ts';
import { EXIT, describeFailure, usage } from '../../src/cli/context.ts';

test('every documented exit code comes from the error that ends a command', () => {
  assert.deepEqual(EXIT, { ok: 0, failure: 1, usage: 2, conditionFailed: 3, outcomeUnknown: 4 });
  assert.equal(describeFailure(usage('bad')).exitCode, 2);
  assert.equal(describeFailure(new InvalidInputError('events[0].type', 'must be a string')).exitCode, 2);
  assert.equal(describeFailure(new AppendConditionFailedError({ failIfEventsMatch: Query.all() }, 3n)).exitCode, 3);
  const unknown = describeFailure(new AppendOutcomeUnknownError(['01890a5d-ac96-774b-bcce-b302099a8057'], 'no answer within appendTimeoutMs (30000 ms)'));
  assert.equal(unknown.exitCode, 4);
  assert.match(unknown.line, /^error \[APPEND_OUTCOME_UNKNOWN\]: /);
  assert.equal(describeFailure(new EventStoreDatabaseError('PostgreSQL error: boom\n  detail', new Error('boom'))).exitCode, 1);
  assert.doesNotMatch(describeFailure(new EventStoreDatabaseError('a\nb', undefined)).line, /\n/, 'one line');
  assert.equal(describeFailure(new Error('anything else')).exitCode, 1);
});
