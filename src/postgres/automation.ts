// The PostgreSQL store's automation: a durable consumer (lease, checkpoint, retries, status:
// consumer.ts) whose attempt at a run of events decides the reactions first, outside any
// transaction, and then commits them and the checkpoint in one short READ COMMITTED transaction:
// BEGIN; checkpoint compare-and-set; one append_batch call with a command per reacting event;
// COMMIT. Whatever instant the process dies at, either both are in the log or neither is.
import type pg from 'pg';
import { AppendConditionFailedError } from '../append-condition.ts';
import { DuplicateEventIdError } from '../errors.ts';
import type { SequencedEvent } from '../events.ts';
import { withMetadataEntry } from '../events.ts';
import { prepareAppend } from '../operation-input.ts';
import type { DecisionModelSource } from '../decisions/decision-model.ts';
import { AUTOMATION_DEFAULTS, decideReactions, validateAutomationOptions, withinTimeout, type Automation, type AutomationOptions, type AutomationStatus } from '../decisions/automation.ts';
import { TRACEPARENT_KEY } from '../telemetry/names.ts';
import { errorFields } from '../telemetry/log.ts';
import type { PendingAppend } from './append-batcher.ts';
import { appendPayload, appendStatementText, toCommandResult, type AppendRow } from './append-sql.ts';
import { commandsAreIndependent } from './batch-independence.ts';
import { isConnectionLost } from './classify.ts';
import { LeaseLostError, PostgresConsumer, moveCheckpointPast, type AttemptOutcome, type AttemptRunner, type ConsumerHost } from './consumer.ts';

/** What an automation needs from its store beyond what a consumer does. */
export interface AutomationHost {
  consumers: ConsumerHost;
  /** Where decision models are read (the store itself: its pool, its snapshots). */
  decisions: DecisionModelSource;
  conditionScanLimit: number;
  /** Reactions carry the trace context of the span that decided them (see propagateTraceContext). */
  propagateTraceContext: boolean;
}

/** One reacting event's command in the transaction's append_batch call. */
interface ReactionCommand {
  /** Index of the triggering event in the attempt's run. */
  index: number;
  command: PendingAppend;
  /** Every event of the command has an id derived from the trigger (see reactionId). */
  derivedIds: boolean;
}

/** The idle session of a vanished client must not hold the head lock: the server ends it after this. */
const IDLE_IN_TRANSACTION_TIMEOUT = '1s';

export class PostgresAutomation<Data = unknown> implements Automation {
  readonly name: string;
  readonly #host: AutomationHost;
  readonly #options: AutomationOptions<Data, any>;
  readonly #consumer: PostgresConsumer<Data>;
  readonly #appendSql: string;
  readonly #handlerTimeoutMs: number;

  /** @internal use `store.automation(name, options)` */
  constructor(host: AutomationHost, name: string, options: AutomationOptions<Data, any>) {
    validateAutomationOptions(name, options);
    this.name = name;
    this.#host = host;
    this.#options = options;
    this.#appendSql = appendStatementText(host.consumers.quotedSchema);
    const runAttempt: AttemptRunner<Data> = (attempt) => this.#attempt(attempt);
    // The consumer validates the shared options (and the name); handlerTimeoutMs is checked there.
    this.#consumer = new PostgresConsumer<Data>(host.consumers, name, {
      query: options.query,
      maxAttempts: options.maxAttempts ?? AUTOMATION_DEFAULTS.maxAttempts,
      retryDelayMs: options.retryDelayMs ?? AUTOMATION_DEFAULTS.retryDelayMs,
      ...(options.batchSize !== undefined && { batchSize: options.batchSize }),
      ...(options.pollIntervalMs !== undefined && { pollIntervalMs: options.pollIntervalMs }),
      ...(options.takeoverIntervalMs !== undefined && { takeoverIntervalMs: options.takeoverIntervalMs }),
      ...(options.handlerTimeoutMs !== undefined && { handlerTimeoutMs: options.handlerTimeoutMs }),
      ...(options.instanceId !== undefined && { instanceId: options.instanceId }),
      runAttempt,
    });
    this.#handlerTimeoutMs = options.handlerTimeoutMs ?? 60_000;
  }

  run(options: { signal?: AbortSignal } = {}): Promise<void> {
    return this.#consumer.run(options);
  }

  status(options: { signal?: AbortSignal } = {}): Promise<AutomationStatus> {
    return this.#consumer.status(options);
  }

  /**
   * Decides every event of the run (stopping between events when asked), then commits the
   * reactions with the checkpoint. A failed decision, a lost race (a reaction's condition) or a
   * foreign id clash is reported at its event: the consumer then commits the events before it
   * (deciding them again) and retries it alone, so no event is ever skipped.
   */
  async #attempt({ session, events, checkpoint, attempt, signal, instanceId }: Parameters<AttemptRunner<Data>>[0]): Promise<AttemptOutcome> {
    const commands: ReactionCommand[] = [];
    let processed = 0;
    // Decided before the transaction begins: decision-model reads run on the store's pool, and
    // the head lock that append_batch takes is held only for the two round trips after it.
    for (let index = 0; index < events.length; index++) {
      if (index > 0 && signal.aborted) break;
      const event = events[index]!;
      try {
        const command = await this.#decide(event, attempt, signal);
        if (command) commands.push({ index, ...command });
      } catch (error) {
        return signal.aborted ? { kind: 'stopped' } : { kind: 'failed', index, error };
      }
      processed = index + 1;
    }
    const last = events[processed - 1]!;
    if (commands.length === 0) {
      // Nothing to append: the checkpoint alone, a transaction of one statement.
      await moveCheckpointPast(session, this.#host.consumers.quotedSchema, this.name, instanceId, checkpoint, last);
      return { kind: 'committed', through: processed - 1 };
    }
    return this.#commit(session, events, commands, checkpoint, processed, instanceId);
  }

  /** The reactions to one event as an append command (undefined: nothing to append). */
  async #decide(event: SequencedEvent<Data>, attempt: number, signal: AbortSignal): Promise<Omit<ReactionCommand, 'index'> | undefined> {
    const telemetry = this.#host.consumers.telemetry;
    const decide = async (): Promise<Omit<ReactionCommand, 'index'> | undefined> => {
      const deciding = decideReactions(this.#host.decisions, this.name, this.#options, event, attempt, signal);
      const reaction = await withinTimeout(deciding, this.#handlerTimeoutMs, () => `the decision of automation "${this.name}" did not finish within ${this.#handlerTimeoutMs} ms (event at position ${event.position})`);
      if (!reaction) return undefined;
      const prepared = prepareAppend(reaction.events, reaction.condition, undefined);
      let normalized = prepared.events;
      // The reactions continue the trace of the event they answer (this handle span's).
      const traceparent = this.#host.propagateTraceContext ? telemetry?.activeTraceparent() : undefined;
      if (traceparent !== undefined) normalized = normalized.map((reactionEvent) => withMetadataEntry(reactionEvent, TRACEPARENT_KEY, traceparent));
      const command: PendingAppend = {
        parts: [{
          events: normalized,
          condition: reaction.condition === undefined ? null : { query: reaction.condition.failIfEventsMatch.toInternal(), after: prepared.after === undefined ? null : prepared.after.toString() },
          callerCondition: reaction.condition,
        }],
        events: normalized,
        commands: false,
        signal: undefined,
      };
      return { command, derivedIds: reaction.derivedIds === reaction.events.length };
    };
    return telemetry ? telemetry.handle(this.name, event.position, event.metadata, decide) : decide();
  }

  /**
   * One transaction: the checkpoint's compare-and-set first (it locks only this automation's
   * row), then append_batch (it takes the store's head lock, held until COMMIT: one more round
   * trip), then COMMIT. append_batch needs READ COMMITTED and a fresh snapshot per statement,
   * which an explicit READ COMMITTED transaction gives whatever the server's default.
   */
  async #commit(session: pg.Client, events: readonly SequencedEvent<Data>[], commands: readonly ReactionCommand[], checkpoint: bigint, processed: number, instanceId: string): Promise<AttemptOutcome> {
    const last = events[processed - 1]!;
    const telemetry = this.#host.consumers.telemetry;
    const pending = commands.map(({ command }) => command);
    const eventCount = pending.reduce((sum, command) => sum + command.events.length, 0);
    const span = telemetry?.detached(() => telemetry.startAppend(eventCount, pending.some((command) => command.parts[0]!.condition !== null)));
    const values = [appendPayload(pending), false, String(this.#host.conditionScanLimit), pending.flatMap((command) => command.events.map((event) => event.id)), commandsAreIndependent(pending.flatMap((command) => command.parts))];
    let open = false;
    try {
      await session.query(`BEGIN ISOLATION LEVEL READ COMMITTED; SET LOCAL idle_in_transaction_session_timeout = '${IDLE_IN_TRANSACTION_TIMEOUT}'`);
      open = true;
      await moveCheckpointPast(session, this.#host.consumers.quotedSchema, this.name, instanceId, checkpoint, last);
      const { rows } = await session.query<AppendRow>(this.#appendSql, values);
      telemetry?.batchSent(pending.length);
      let position: bigint | undefined;
      for (const [commandIndex, result] of rows.map(toCommandResult).entries()) {
        const { index, command, derivedIds } = commands[commandIndex]!;
        const trigger = `automation ${this.name}: the reaction to position ${events[index]!.position}`;
        switch (result.status) {
          case 'appended':
            position = result.position;
            break;
          case 'already-appended':
            // Its derived ids are stored with the same content: this event was reacted to before
            // (the checkpoint was reset, or restored from an older backup).
            this.#host.consumers.log.debug({ automation: this.name, position: String(result.position) }, `${trigger} is stored already`);
            break;
          case 'duplicate-id':
            if (derivedIds) {
              this.#host.consumers.log.warn({ automation: this.name, conflict: result.conflict === undefined ? null : String(result.conflict) }, `${trigger}: its ids are stored with other content (an earlier reaction to the same event); not appended again`);
              break;
            }
            await this.#rollBack(session);
            open = false;
            span?.end('duplicate_id', { batchCommands: pending.length });
            return { kind: 'failed', index, error: new DuplicateEventIdError(command.events.map((event) => event.id), result.conflict) };
          case 'condition-failed':
            // A lost race: an event the decision depends on came in between. Nothing of this
            // transaction may commit (the commands after it were checked without its events).
            await this.#rollBack(session);
            open = false;
            span?.end('condition_failed', { batchCommands: pending.length });
            return { kind: 'failed', index, error: new AppendConditionFailedError(command.parts[0]!.callerCondition!, result.conflict) };
          default:
            throw new Error(`append_batch answered ${result.status === 'unknown' ? `status ${result.code}` : result.status} for a command of its own`);
        }
      }
      await session.query('COMMIT');
      open = false;
      span?.end('appended', { position, batchCommands: pending.length });
      return { kind: 'committed', through: processed - 1 };
    } catch (error) {
      if (open) await session.query('ROLLBACK').catch(() => undefined);
      // A lost connection leaves the outcome unknown, which is harmless here: the checkpoint
      // moved with the reactions or neither did, and the next session reads where it is.
      span?.end(isConnectionLost(session) ? 'unknown' : 'aborted', { batchCommands: pending.length, error });
      if (error instanceof LeaseLostError || isConnectionLost(session) || this.#host.consumers.isTransient(error)) throw error;
      this.#host.consumers.log.warn({ automation: this.name, ...errorFields(error) }, `automation ${this.name}: committing reactions failed`);
      // As a consumer's failed commit: blame the last event; the events before it commit
      // without it, which narrows a bad reaction down to its event.
      return { kind: 'failed', index: processed - 1, error };
    }
  }

  async #rollBack(session: pg.Client): Promise<void> {
    try {
      await session.query('ROLLBACK');
    } catch {
      throw new LeaseLostError('the automation\'s session was lost');
    }
  }
}
