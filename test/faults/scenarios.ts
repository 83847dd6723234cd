// The fault scenarios. Each injects one kind of fault, for `faultMs`, while the workload runs;
// the harness heals everything afterwards and checks. "Mid-append" faults fire on the chunk that
// carries a call of the append function, "mid-read" on one that carries a read of events or the
// head, "mid-commit" on the server's answer to an append (sent after its COMMIT) or to a
// consumer's COMMIT: the server committed, the client never hears it.
import { setTimeout as sleep } from 'node:timers/promises';
import { isAppendSql, isCommitSql, isReadSql, type FaultContext, type Scenario } from './harness.ts';
import type { ChunkInfo, FaultAction, Trigger } from './proxy.ts';

const fromWriter = (chunk: ChunkInfo): boolean => chunk.connection.applicationName?.startsWith('faults-w') === true;
const fromSuite = (chunk: ChunkInfo): boolean => chunk.connection.applicationName?.startsWith('faults-') === true;

/** Arms a fresh trigger again and again (a short gap after each firing) until the fault phase ends. */
async function armRepeatedly(context: FaultContext, trigger: (round: number) => Trigger, gapMs: number): Promise<void> {
  for (let round = 0; Date.now() < context.until; round++) {
    const armed = context.proxy.arm(trigger(round));
    const fired = await Promise.race([armed.fired.then(() => true), sleep(Math.max(0, context.until - Date.now())).then(() => false)]);
    armed.disarm();
    if (fired) context.injected();
    await sleep(gapMs);
  }
}

async function untilEnd(context: FaultContext): Promise<void> {
  await sleep(Math.max(0, context.until - Date.now()));
}

function midAppend(action: FaultAction, round: number): Trigger {
  // Odd rounds deliver the call first (the server runs and may commit it), even rounds do not.
  return { direction: 'to-server', match: (chunk) => fromWriter(chunk) && chunk.statements.some(isAppendSql), action, deliver: round % 2 === 1 };
}

/**
 * A flapping network: the append is delivered (and commits) and its answer lost, then the next
 * few appends of the same process die before reaching the server, so that resends of the
 * committed batch fail too, for as long as the burst lasts.
 */
async function appendBurst(context: FaultContext, action: FaultAction, resends: number): Promise<boolean> {
  const first = context.proxy.arm({ ...midAppend(action, 1) });
  const connection = await Promise.race([first.fired, sleep(Math.max(0, context.until - Date.now())).then(() => undefined)]);
  first.disarm();
  if (!connection) return false;
  context.injected();
  const application = connection.applicationName;
  const following = context.proxy.arm({
    direction: 'to-server',
    match: (chunk) => chunk.connection.applicationName === application && chunk.statements.some(isAppendSql),
    action,
    deliver: false,
    times: resends,
  });
  await sleep(600);
  following.disarm();
  context.injected(following.count);
  return true;
}

async function midAppendRounds(context: FaultContext, action: FaultAction): Promise<void> {
  for (let round = 0; Date.now() < context.until; round++) {
    if (round % 3 === 2) await appendBurst(context, action, 3);
    else {
      const armed = context.proxy.arm(midAppend(action, round));
      const fired = await Promise.race([armed.fired.then(() => true), sleep(Math.max(0, context.until - Date.now())).then(() => false)]);
      armed.disarm();
      if (fired) context.injected();
    }
    await sleep(GAP_MS);
  }
}

function midRead(action: FaultAction, round: number): Trigger {
  return { direction: 'to-server', match: (chunk) => fromSuite(chunk) && chunk.statements.some(isReadSql), action, deliver: round % 2 === 1 };
}

function midCommit(action: FaultAction, round: number): Trigger {
  // Every third round a consumer's COMMIT (read model and checkpoint), otherwise an append.
  const answers = round % 3 === 2 ? isCommitSql : isAppendSql;
  return { direction: 'to-client', match: (chunk) => fromSuite(chunk) && chunk.replyTo !== undefined && answers(chunk.replyTo), action, deliver: false };
}

const GAP_MS = 120;

export const SCENARIOS: Scenario[] = [
  {
    name: 'cut-mid-append',
    summary: 'RST on the connection carrying an append: before the server got it, after (it may commit), or after and then on the next 3 appends of that process (resends fail too)',
    inject: (context) => midAppendRounds(context, { kind: 'cut' }),
  },
  {
    name: 'close-mid-append',
    summary: 'FIN instead of the append (or right after delivering it)',
    inject: (context) => midAppendRounds(context, { kind: 'close' }),
  },
  {
    name: 'cut-mid-read',
    summary: 'RST on the connection carrying a read (writers, subscriber, consumer)',
    inject: (context) => armRepeatedly(context, (round) => midRead({ kind: 'cut' }, round), GAP_MS),
  },
  {
    name: 'close-mid-read',
    summary: 'FIN on the connection carrying a read',
    inject: (context) => armRepeatedly(context, (round) => midRead({ kind: 'close' }, round), GAP_MS),
  },
  {
    name: 'cut-mid-commit',
    summary: 'the server committed (an append, or a consumer transaction); RST instead of its answer',
    inject: (context) => armRepeatedly(context, (round) => midCommit({ kind: 'cut' }, round), GAP_MS),
  },
  {
    name: 'close-mid-commit',
    summary: 'the server committed; FIN instead of its answer',
    inject: (context) => armRepeatedly(context, (round) => midCommit({ kind: 'close' }, round), GAP_MS),
  },
  {
    name: 'cut-random-in-flight',
    summary: 'RST on a random connection that has a statement in flight, every 100 ms',
    inject: async (context) => {
      while (Date.now() < context.until) {
        const connection = context.proxy.pick(context.random, (candidate) => candidate.awaitingReply && candidate.applicationName?.startsWith('faults-') === true);
        if (connection) {
          connection.cut();
          context.injected();
        }
        await sleep(100);
      }
    },
  },
  {
    name: 'stall-mid-append',
    summary: 'blackhole (no bytes, no FIN, no RST) for longer than appendTimeoutMs: before delivering an append, or after (reply withheld)',
    faultMs: (profile) => profile.stallMs,
    inject: async (context) => {
      const stall: FaultAction = { kind: 'stall' };
      const before = context.proxy.arm({ ...midAppend(stall, 0), times: 2 });
      const afterDelivery = context.proxy.arm({ ...midAppend(stall, 1), times: 2 });
      await untilEnd(context);
      context.injected(before.count + afterDelivery.count);
    },
  },
  {
    name: 'stall-mid-read',
    summary: 'blackhole for longer than readTimeoutMs, on connections carrying reads; and the next 2 new connections (connects that never complete)',
    faultMs: (profile) => profile.stallMs,
    inject: async (context) => {
      const stall: FaultAction = { kind: 'stall' };
      const before = context.proxy.arm({ ...midRead(stall, 0), times: 2 });
      const afterDelivery = context.proxy.arm({ ...midRead(stall, 1), times: 2 });
      // The stalled connections' pools will open new ones: blackhole the first two of those.
      context.proxy.faultNew(2, stall, () => context.injected());
      await untilEnd(context);
      context.injected(before.count + afterDelivery.count);
    },
  },
  {
    name: 'delay',
    summary: 'every chunk, both ways, on every connection (open and new), 80 ms late',
    inject: async (context) => {
      const delay: FaultAction = { kind: 'delay', ms: 80 };
      context.injected(context.proxy.faultAll(delay));
      context.proxy.faultNew(Infinity, delay, () => context.injected());
      await untilEnd(context);
    },
  },
  {
    name: 'throttle',
    summary: 'every connection (open and new) throttled to 12 kB/s each way',
    inject: async (context) => {
      const throttle: FaultAction = { kind: 'throttle', bytesPerSecond: 12_000 };
      context.injected(context.proxy.faultAll(throttle));
      context.proxy.faultNew(Infinity, throttle, () => context.injected());
      await untilEnd(context);
    },
  },
  {
    name: 'terminate-backends',
    summary: 'pg_terminate_backend of a random backend of the suite every 120 ms',
    inject: async (context) => {
      while (Date.now() < context.until) {
        const backends = await context.adminQuery<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'faults-%' AND pid <> pg_backend_pid()`);
        const victim = backends[Math.floor(context.random() * backends.length)];
        if (victim) {
          await context.adminQuery('SELECT pg_terminate_backend($1)', [victim.pid]);
          context.injected();
        }
        await sleep(120);
      }
    },
  },
  {
    name: 'partition',
    summary: 'every connection reset and new ones refused (RST) for the whole fault',
    inject: async (context) => {
      context.injected(context.proxy.faultAll({ kind: 'cut' }));
      context.proxy.refuse();
      await untilEnd(context);
    },
  },
  {
    name: 'postgres-crash',
    summary: 'pg_ctl stop -m immediate just after an append committed (its answer withheld), or while one is in flight; restart on the same data directory after 0.7 s',
    // One crash in the short run; one every few seconds (alternating the two kinds) in the full one.
    faultMs: (profile) => (profile.faultMs < 5000 ? 1000 : profile.faultMs),
    inject: async (context) => {
      for (let round = 0; ; round++) {
        if (round % 2 === 0) {
          // The append committed; its answer is held back until the server is gone, then the
          // connection is cut: the client learns nothing, and its resends meet a dead server.
          const armed = context.proxy.arm({
            direction: 'to-client',
            match: (chunk) => fromWriter(chunk) && chunk.replyTo !== undefined && isAppendSql(chunk.replyTo),
            action: { kind: 'stall', direction: 'to-client' },
            deliver: false,
          });
          const connection = await Promise.race([armed.fired, sleep(1000).then(() => undefined)]);
          armed.disarm();
          await context.cluster.crash();
          connection?.cut();
        } else {
          const armed = context.proxy.arm({ direction: 'to-server', match: (chunk) => fromWriter(chunk) && chunk.statements.some(isAppendSql), action: { kind: 'delay', ms: 0 }, deliver: true });
          await Promise.race([armed.fired, sleep(1000)]);
          armed.disarm();
          await context.cluster.crash();
        }
        context.injected();
        await sleep(700);
        const restarting = Date.now();
        await context.cluster.restart();
        context.note(`restart (crash recovery) took ${Date.now() - restarting} ms`);
        if (Date.now() + 2500 >= context.until) break;
        await sleep(2000);
      }
    },
  },
  {
    name: 'writer-sigkill',
    summary: 'SIGKILL of a writer process the moment its append reaches the server; a replacement starts',
    inject: async (context) => {
      while (Date.now() < context.until) {
        await context.killWriterMidAppend();
        await sleep(400);
      }
    },
  },
  {
    name: 'abort-storm',
    summary: 'half of the appends and reads on AbortSignal.timeout(1-15 ms), 5 % poison appends that fail in the database (their batch is split), 10 callers per process, 3 ms latency; callers without a signal must not fail',
    abortShare: 0.5,
    abortAfterMs: [1, 40],
    // Some appends break their batch in the database: the store runs the batch's commands alone
    // then, and an abort must not hit the one running.
    poisonShare: 0.05,
    // Many concurrent callers per process, so that aborting ones share batches with others.
    loops: 10,
    innocentMustSucceed: true,
    inject: async (context) => {
      const delay: FaultAction = { kind: 'delay', ms: 3 };
      context.proxy.faultAll(delay);
      context.proxy.faultNew(Infinity, delay);
      await untilEnd(context);
    },
  },
];
