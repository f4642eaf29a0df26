// Package testenv is the integration-test harness: a throwaway PostgreSQL
// cluster shared by the tests of one package, fresh databases per test,
// embedded NATS JetStream servers on free ports that tests can restart, and the
// shadowcube binary for kill -9 tests.
//
// Use it from TestMain so the shared cluster is stopped when the package's
// tests end:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }
//
// SHADOWCUBE_TEST_DATABASE_URL and SHADOWCUBE_TEST_NATS_URL point the harness
// at existing servers instead. When PostgreSQL binaries are missing the tests
// that need them skip, except under CI=true, where they fail. A server that
// is installed but does not start (a start timeout on a loaded machine, a
// NATS restart in a fault test) fails the test that needed it; only missing
// binaries are remembered, so one slow start never skips later tests.
package testenv
