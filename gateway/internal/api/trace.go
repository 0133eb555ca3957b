package api

import "github.com/oneoffice/provisioner/shared/tracecontext"

// traceparent continues the partner's W3C trace with a new span id for the
// gateway, or starts a new trace. The command carries it and the worker
// logs it, so one call can be followed across processes.
func traceparent(in string) string {
	if p, ok := tracecontext.Parse(in); ok {
		return p.Child().String()
	}
	return tracecontext.New().String()
}
