// Package cdc reads the legacy PostgreSQL database's changes through logical
// replication (pgoutput, protocol v2) and publishes them to the JetStream
// stream CDC as schemas.ChangeEvent, one message per change on
// cdc.<db>.<schema>.<table> (db = current_database()).
//
// It is the capture half of cube sync: the Reader sets up a persistent slot
// and a publication, copies existing rows inside the slot's exported snapshot
// (op=snapshot), then streams every committed transaction. Transactions are
// buffered until commit (spilling to a temporary file past a memory bound;
// large in-progress transactions are streamed by pgoutput and buffered the
// same way, aborted ones and rolled-back subtransactions are dropped) so
// every event carries its transaction's commit LSN, tx id, index and size.
// Events are published asynchronously through a bounded window, and the slot
// is acknowledged (standby status update) only up to the end of the last
// transaction whose every event JetStream has stored, contiguously (when
// nothing is buffered or in flight, up to the WAL end reported by the
// current session's keepalives, never an earlier session's): a crash can
// duplicate events, never lose them.
//
// # Event contract
//
//   - Nats-Msg-Id is <slot>:<commit LSN>:<index>; snapshot rows use
//     <slot>:snapshot:<consistent point LSN>:<index>.
//   - Stream events: CommitLSN is the commit LSN of the source transaction,
//     TxID its xid, Index 0..TxSize-1 over all its events across tables, in
//     source order; CommitTime in UTC. Transactions appear in commit order.
//   - Snapshot events: Op=snapshot, CommitLSN = the slot's consistent point,
//     TxID 0, TxSize 0, Index running over the whole snapshot. Every change
//     committed after the consistent point is streamed; none before it.
//     A re-snapshot (crash mid-snapshot, --resnapshot) publishes every row
//     again at a new consistent point.
//   - Columns (name, format_type, OID, key flag) and Key (the primary key,
//     else the replica identity columns) are on every event. New holds the
//     new row (values in PostgreSQL's exact text form, NULL as null, written
//     in column order); Unchanged lists TOAST columns whose value was not
//     sent (absent from New: leave them as they are); under REPLICA IDENTITY
//     FULL they are filled from the old row instead. Old holds the old key
//     (DEFAULT/INDEX identity: key columns only) or the whole old row (FULL)
//     when the server sent it: every delete, and updates that change the key.
//   - Truncate is one event per truncated table, each listing every table of
//     the statement in Truncate.Tables with the Cascade and RestartIdentity
//     flags, all in the one transaction.
//   - Op=schema is published (in the transaction, before the first change
//     that uses it) when a relation's shape (columns, types, key, replica
//     identity, name) differs from the one this process saw before; the
//     event's Columns are the new shape. After a process restart the first
//     relation message of each table is not announced.
//   - Heartbeat mode table (the default) upserts shadowcube.heartbeat(slot,
//     beat_at) every Heartbeat, in a schema of shadowcube's own that cdc
//     creates, never in a user schema: those changes are ordinary events of
//     that table and let consumers advance their freshness watermark while
//     legacy is idle. Mode message emits a non-transactional logical message
//     (no table at all; the slot advances but nothing is published).
//   - Transactions that start with
//     pg_logical_emit_message(true, 'shadowcube.origin', x), x in
//     Config.IgnoreOrigins, are not published at all.
//   - Stream order: after a NATS failure the session restarts from the
//     durable position; the publisher never sends on a reconnected
//     connection and never retries single events, so stored events stay in
//     (commit LSN, index) order; duplicates older than the stream's
//     de-duplication window can appear after a long outage: de-duplicate by
//     (slot, commit LSN, index) and checkpoint.
package cdc
