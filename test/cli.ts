// Running `dses` as a child process, as an operator does, for the CLI tests.
//
// scripts/run-tests.ts compiles the package once per run and sets DSES_CLI_MAIN to the compiled
// CLI (what an installed package runs): a process then starts in about 0.3 s instead of the
// 0.8 to 1.5 s that compiling the TypeScript sources through tsx takes on each spawn. Without it
// (a test file run on its own), bin/dses.js runs the sources, as in a fresh clone.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { databaseUrl } from './helpers.ts';

export const ROOT = fileURLToPath(new URL('../', import.meta.url));

/** The command that starts dses: node and the script, before the arguments. */
export function dsesCommand(): string[] {
  return [process.execPath, process.env.DSES_CLI_MAIN ?? 'bin/dses.js'];
}

export interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface RunOptions {
  /** What stdin gets (then it is closed); nothing by default. */
  input?: Buffer | string;
  /** The environment on top of this process's, with DATABASE_URL set to the test database (undefined removes a variable). */
  env?: Record<string, string | undefined>;
  /** Run bin/dses.js, as `npx dses` in a clone does (the sources through tsx unless dist/ is built), even when DSES_CLI_MAIN is set. */
  viaBin?: boolean;
  /** Called with the child once it is started (to signal it). */
  started?: (child: ChildProcess) => void;
}

/** Runs `dses args...` to its end (stdout and stderr are pipes, not a terminal). */
export function dses(args: readonly string[], options: RunOptions = {}): Promise<Run> {
  const [node, script] = options.viaBin ? [process.execPath, 'bin/dses.js'] : (dsesCommand() as [string, string]);
  const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: databaseUrl() };
  for (const [name, value] of Object.entries(options.env ?? {})) {
    if (value === undefined) delete env[name];
    else env[name] = value;
  }
  return new Promise((resolve, reject) => {
    const child = spawn(node, [script, ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const stdout: Buffer[] = [];
    const stderr: Buffer[] = [];
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk));
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout: Buffer.concat(stdout).toString('utf8'), stderr: Buffer.concat(stderr).toString('utf8') }));
    child.stdin.on('error', () => undefined);
    child.stdin.end(options.input);
    options.started?.(child);
  });
}
