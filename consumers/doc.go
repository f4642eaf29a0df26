// Package consumers is the cube sync stage: it applies the CDC stream
// (JetStream stream CDC, one message per legacy row change) to each cube's own
// PostgreSQL database, transformed through a mapping file of SQL expressions,
// and proves both sides agree (Reconcile).
//
// Guarantees of the applier (Applier, one per mapping target):
//   - a legacy transaction is applied whole, in commit order, inside one target
//     transaction, possibly together with later whole transactions (batching);
//   - the target transaction also stores the last applied position in
//     shadowcube.applied (one row per target and source slot), and events at or
//     below it are skipped, so duplicate deliveries, redeliveries after a crash
//     and replays of the whole stream change nothing;
//   - JetStream messages are acknowledged only after the commit;
//   - transient errors are retried with bounded, jittered back-off; a poison
//     transaction goes to the DLQ stream (dlq.sync) and, by policy, stops the
//     target (default) or is skipped;
//   - after each commit the target's watermark (LSN and commit time of the
//     last applied source transaction) is published to the JetStream KV
//     bucket schemas.KVBucket under schemas.WatermarkKey(target).
//   - an update that leaves TOAST values unchanged (not sent by the source)
//     updates the target row in place, setting only what the event carries
//     (a key change moves the row to its new key in place); it never goes
//     through an insert, so NOT NULL, CHECK and DEFAULT of the untouched
//     columns see the stored value. When the target cannot supply the value
//     (it lacks the row, the row enters the where filter, the filter or a
//     computed column reads the unchanged value together with sent ones)
//     the row is re-read from the source by key, in a snapshot that sees
//     the event's transaction (see Applier.reselect for why a newer source
//     row still converges);
//   - a run of 32 or more full-row changes of a plainly mapped table (setapply.go:
//     plain columns of the same type, no where filter, soft delete or
//     conflict policy) is inserted with COPY where the target lacks the
//     keys, the rest upserted; the same end state as the row path, which
//     every other change takes (and the whole batch, when COPY fails);
//   - foreign keys between a target's tables are decided at start-up
//     (DecideFK): apply as session_replication_role = replica when the role
//     may, else with the keys enforced (snapshot parents first, whole source
//     transactions, deferrable keys deferred), or a start-up error.
//
// Every target transaction begins with
// pg_logical_emit_message(true, 'shadowcube.origin', <source slot>) so a CDC
// reader of the cube database can drop sync's own writes (two-way sync).
package consumers
