// Placeholder: filled in on its own branch.
import type { Command } from 'commander';
import type { GlobalOptions } from '../context.ts';

export function registerTransfer(_program: Command, _globals: () => GlobalOptions): void {}
