// Package cdc reads the legacy PostgreSQL database's changes through logical
// replication (pgoutput, protocol v2) and publishes them to the JetStream
// stream CDC as schemas.ChangeEvent, one message per change on
// cdc.<db>.<schema>.<table>.
//
// It is the capture half of cube sync: the Reader sets up a persistent slot
// and a publication, copies existing rows inside the slot's exported snapshot
// (op=snapshot), then streams every committed transaction. Transactions are
// buffered until commit (spilling to a temporary file past a memory bound) so
// every event carries its transaction's commit LSN, tx id, index and size.
// Events are published asynchronously through a bounded window, and the slot
// is acknowledged (standby status update) only up to the end of the last
// transaction whose every event JetStream has stored, contiguously: a crash
// can duplicate events (de-duplicated by Nats-Msg-Id and by the appliers'
// checkpoints), never lose them.
//
// Truncate statements are published as one event per truncated table, each
// listing every table of the statement in Truncate.Tables.
package cdc
