// Package pgcluster starts a throwaway PostgreSQL cluster from the local
// PostgreSQL binaries (initdb into a temporary directory, wal_level=logical,
// a free port, its own unix socket directory). The test harness and
// `shadowcube demo` use it; it never touches the machine's own PostgreSQL.
package pgcluster
