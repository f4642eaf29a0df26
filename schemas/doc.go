// Package schemas holds the events that flow between shadowcube's stages, their
// JSON Schemas, the NATS subject names they travel on, and strict decoders.
//
// It is the domain layer of the pipeline: every stage (publisher, cdc,
// consumers, shadow, comparator) speaks these types and nothing else, and this
// package imports no infrastructure. Each event carries a version in its "v"
// field ("major.minor"); decoders accept any minor version of a major version
// they know and reject other majors with ErrUnknownVersion.
package schemas
