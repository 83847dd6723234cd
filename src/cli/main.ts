// dses: the command line for the people who run the store. Commands live in commands/*.ts; this
// file wires them to commander, and turns every failure into one line on stderr and the
// documented exit code (see EXIT in context.ts).
import { Command, CommanderError, Option } from 'commander';
import { EXIT, describeFailure, type GlobalOptions } from './context.ts';
import { registerSetup } from './commands/setup.ts';
import { registerEvents } from './commands/events.ts';
import { registerTransfer } from './commands/transfer.ts';
import { registerInspect } from './commands/inspect.ts';

export function buildProgram(): Command {
  const program = new Command('dses')
    .description('dynamic-streams-eventstore: a DCB event store on PostgreSQL')
    .addOption(new Option('--url <url>', 'PostgreSQL connection string (default: DATABASE_URL)'))
    .addOption(new Option('--schema <schema>', 'the store\'s schema').default('eventstore'))
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeErr: (text) => process.stderr.write(text) });
  const globals = (): GlobalOptions => program.opts<GlobalOptions>();
  registerSetup(program, globals);
  registerEvents(program, globals);
  registerTransfer(program, globals);
  registerInspect(program, globals);
  for (const command of program.commands) command.exitOverride().showHelpAfterError('(run with --help for usage)');
  return program;
}

export async function main(argv: readonly string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync([...argv], { from: 'user' });
    return EXIT.ok;
  } catch (error) {
    if (error instanceof CommanderError) {
      // Help and version are not failures; every other parse error is a usage error (commander printed it).
      return error.code === 'commander.helpDisplayed' || error.code === 'commander.help' || error.code === 'commander.version' ? EXIT.ok : EXIT.usage;
    }
    const { exitCode, line } = describeFailure(error);
    process.stderr.write(`${line}\n`);
    return exitCode;
  }
}

process.exitCode = await main(process.argv.slice(2));
