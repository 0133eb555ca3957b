// Package e2e tests the whole provisioning path the way partners see it: real
// gateway and worker processes, built from this tree, on an isolated database,
// Redis DB and AMQP vhost, called over HTTP.
package e2e
