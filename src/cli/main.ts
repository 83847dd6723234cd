// dses: the command line for the people who run the store. Commands live in commands/*.ts; this
// file wires them to commander, and turns every failure into one line on stderr and the
// documented exit code (see EXIT in context.ts).
import { existsSync, readFileSync } from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { EXIT, describeFailure, type GlobalOptions } from './context.ts';
import { registerSetup } from './commands/setup.ts';
import { registerEvents } from './commands/events.ts';
import { registerTransfer } from './commands/transfer.ts';
import { registerInspect } from './commands/inspect.ts';
import { registerServe } from './commands/serve.ts';

/** The package's version: package.json is two levels up from src/cli, three from dist/src/cli. */
function packageVersion(): string {
  for (const relative of ['../../package.json', '../../../package.json']) {
    const file = new URL(relative, import.meta.url);
    if (!existsSync(file)) continue;
    const json = JSON.parse(readFileSync(file, 'utf8')) as { name?: string; version?: string };
    if (json.name === 'dynamic-streams-eventstore' && json.version) return json.version;
  }
  return 'unknown';
}

export function buildProgram(): Command {
  const program = new Command('dses')
    .description('dynamic-streams-eventstore: a DCB event store on PostgreSQL')
    .version(packageVersion(), '-V, --version', 'print the version')
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
  registerServe(program, globals, packageVersion());
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
      // Asked-for help and the version are not failures; help shown because no command was given,
      // and every parse error, are usage errors (commander printed them, on stderr).
      return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    const { exitCode, line } = describeFailure(error);
    process.stderr.write(`${line}\n`);
    return exitCode;
  }
}

process.exitCode = await main(process.argv.slice(2));
