// Package protocol is the wire contract between partners, the gateway and the
// workers: the API methods (methods.go, one definition each, registered by
// Define in registry.go), the typed params of each method with the rules of
// their fields (params.go, rules.go), their strict decoding and canonical
// encoding (decode.go), the error model of SPEC section 1, and the AMQP
// message properties that carry a command to a worker and its result back.
package protocol
