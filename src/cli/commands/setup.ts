// dses dev, dses migrate, dses schema.
import type { Command } from 'commander';
import { startEmbeddedPostgres } from '../../postgres/embedded.ts';
import { pendingMigrations } from '../../postgres/admin.ts';
import { schemaSql } from '../../postgres/schema.ts';
import { EventStore } from '../../postgres/event-store.ts';
import { connectionStringOf, parsePositiveInteger, say, writeOut, type GlobalOptions } from '../context.ts';

export function registerSetup(program: Command, globals: () => GlobalOptions): void {
  program
    .command('dev')
    .description('start an embedded PostgreSQL 17 with a persistent data directory, print its URL, and keep it running until Ctrl-C')
    .option('--data-dir <dir>', 'where the cluster lives (created on first use, reused afterwards)', '.eventstore/pg')
    .option('--port <port>', 'TCP port on localhost (0 picks a free one)', '54329')
    .action(async (options: { dataDir: string; port: string }) => {
      const port = options.port === '0' ? 0 : parsePositiveInteger('--port', options.port);
      const server = await startEmbeddedPostgres({ dataDir: options.dataDir, port });
      await writeOut(`${server.connectionString}\n`);
      say(`PostgreSQL 17 is running (data in ${server.dataDir}). Try: DATABASE_URL=${server.connectionString} npx dses migrate`);
      say('Ctrl-C stops it.');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      say('stopping PostgreSQL');
      await server.stop();
    });

  program
    .command('migrate')
    .description('apply the missing schema migrations (advisory-locked: safe while other processes start)')
    .option('--dry-run', 'print the migrations that would run, and their SQL, without applying them')
    .action(async (options: { dryRun?: boolean }) => {
      const { schema } = globals();
      const connectionString = connectionStringOf(globals());
      const pending = await pendingMigrations(connectionString, schema);
      if (options.dryRun) {
        if (pending.length === 0) say(`schema ${schema} is up to date`);
        for (const migration of pending) await writeOut(`-- migration ${migration.version}: ${migration.name}\n${migration.sql.trim()}\n\n`);
        if (pending.length > 0) say(`${pending.length} migration(s) would be applied to schema ${schema}: ${pending.map((migration) => migration.version).join(', ')}`);
        return;
      }
      const store = await EventStore.connect({ connectionString, schema, migrate: true, telemetry: false });
      await store.close();
      say(pending.length === 0 ? `schema ${schema} is up to date` : `applied ${pending.length} migration(s) to schema ${schema}: ${pending.map((migration) => `${migration.version} ${migration.name}`).join(', ')}`);
    });

  program
    .command('schema')
    .description('print the DDL of the store\'s schema (every migration), for your own migration tool')
    .action(async () => {
      await writeOut(schemaSql(globals().schema));
    });
}
