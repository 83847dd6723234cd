-- Consumer leases keyed without collisions.
--
-- A consumer's lease is a session advisory lock. It was keyed (hashtext(schema), hashtext(name)):
-- two consumer names with the same 32-bit hash shared one lock, so one of them could never run
-- while the other did. Each consumer row now gets a key of its own from a sequence, and the lease
-- is pg_try_advisory_lock(<namespace oid of the schema as int4>, lease_key): unique per schema,
-- and the namespace oid keeps the stores of one database apart.
--
-- Instances of the old and the new library version take different locks for the same consumer,
-- so they do not exclude each other: stop the old instances before starting new ones.
ALTER TABLE __SCHEMA__.consumers
  ADD COLUMN lease_key integer GENERATED ALWAYS AS IDENTITY,
  ADD CONSTRAINT consumers_lease_key_key UNIQUE (lease_key);
