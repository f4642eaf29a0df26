// Package natsx is shadowcube's NATS plumbing: it connects to a NATS server
// (or starts an embedded JetStream server in process when no URL is given) and
// creates or updates, idempotently, the streams, durable consumers and KV
// buckets of the pipeline. Every stage gets its JetStream handle from here.
package natsx
