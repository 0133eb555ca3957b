package tracing

import (
	"go.opentelemetry.io/otel/attribute"
)

// Attributes of the OpenTelemetry semantic conventions used here: messaging
// (with the RabbitMQ ones) and HTTP server spans. The project adds
// oneoffice.* attributes of its own.
const (
	MessagingSystem            = attribute.Key("messaging.system")
	MessagingDestination       = attribute.Key("messaging.destination.name")
	MessagingRoutingKey        = attribute.Key("messaging.rabbitmq.destination.routing_key")
	MessagingDeliveryTag       = attribute.Key("messaging.rabbitmq.message.delivery_tag")
	MessagingMessageID         = attribute.Key("messaging.message.id")
	MessagingConversationID    = attribute.Key("messaging.message.conversation_id")
	MessagingOperationName     = attribute.Key("messaging.operation.name")
	MessagingOperationType     = attribute.Key("messaging.operation.type")
	MessagingBatchMessageCount = attribute.Key("messaging.batch.message_count")
	MessagingBodySize          = attribute.Key("messaging.message.body.size")

	HTTPMethod     = attribute.Key("http.request.method")
	HTTPRoute      = attribute.Key("http.route")
	HTTPStatusCode = attribute.Key("http.response.status_code")
	URLPath        = attribute.Key("url.path")
	URLScheme      = attribute.Key("url.scheme")
	ServerAddress  = attribute.Key("server.address")
	ClientAddress  = attribute.Key("client.address")
	UserAgent      = attribute.Key("user_agent.original")
	ErrorType      = attribute.Key("error.type")

	// APIMethod is the API method a call names (the method label of the
	// metrics); RequestID its request id; Partner the partner's id.
	APIMethod = attribute.Key("oneoffice.method")
	RequestID = attribute.Key("oneoffice.request_id")
	Partner   = attribute.Key("oneoffice.partner")
)

// RabbitMQ is messaging.system of every messaging span.
var RabbitMQ = MessagingSystem.String("rabbitmq")

// Operation types of the messaging conventions.
const (
	OpSend    = "send"
	OpProcess = "process"
	OpSettle  = "settle"
)

// Message is the attributes of a messaging span about one message:
// operation, exchange (the destination; "" is the default exchange, named
// amq.default), routing key, message id and correlation id.
func Message(opName, opType, exchange, routingKey, messageID, correlationID string) []attribute.KeyValue {
	if exchange == "" {
		exchange = "amq.default"
	}
	attrs := []attribute.KeyValue{RabbitMQ, MessagingOperationName.String(opName), MessagingOperationType.String(opType),
		MessagingDestination.String(exchange), MessagingRoutingKey.String(routingKey)}
	if messageID != "" {
		attrs = append(attrs, MessagingMessageID.String(messageID))
	}
	if correlationID != "" {
		attrs = append(attrs, MessagingConversationID.String(correlationID))
	}
	return attrs
}
