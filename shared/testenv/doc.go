// Package testenv gives tests and the bench their own isolated piece of the
// real services on loopback, and runs the gateway and worker binaries of this
// tree on it.
//
// The shared servers are found through TEST_POSTGRES_URL, TEST_AMQP_URL and
// TEST_REDIS_ADDR, with localhost defaults (FromEnv). On them a caller gets a
// fresh PostgreSQL database (CreateDatabase), a RabbitMQ vhost (CreateVhost)
// and a Redis DB claimed for it alone (ClaimRedis); Build compiles the
// binaries, StartProc runs one and waits for its /readyz, and Teardown undoes
// all of it in reverse order within a time limit. UpStack does all of these
// steps for a whole deployment (database, vhost, Redis DB, binaries,
// migrations, a partner's key, workers and a gateway) and Stack.Close
// undoes them; the bench and the preauth bench run on one.
//
// Every function that reaches a server retries with backoff for
// TEST_SERVICE_WAIT (default 45s), so a server that is still starting, or
// restarting after another suite's fault injection, is waited for; past that
// the call fails. Nothing here skips a test: a missing service is a failure,
// on a laptop as in CI.
//
// A test host (NewTestHost, StackConfig.Hosts) runs a process in a network
// namespace of its own with one veth link per server, which Cut takes the
// carrier from: packets dropped both ways, no RST, no FIN. It needs root;
// RequireTestHosts fails a test without it under CI and skips it elsewhere.
//
// The error-returning functions take a context and are what a program such as
// the bench calls. Tests call the testing.TB wrappers instead (Database,
// Vhost, Redis, FreeAddr, Launch, Start): they fail the test on error and
// register the undo step with t.Cleanup.
package testenv
