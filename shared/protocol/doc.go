// Package protocol is the wire contract between partners, the gateway and the
// workers: the method registry (methods.go, one entry per API method), the
// typed and validated params of each method, the error model of SPEC section
// 1, and the AMQP message properties that carry a command to a worker and its
// result back.
package protocol
