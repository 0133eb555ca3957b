// Package tracecontext reads and writes the W3C traceparent header, version
// 00: "00-" trace id (32 lowercase hex digits, not all zero) "-" parent span
// id (16) "-" flags (2). The gateway continues a partner's trace with a span
// of its own, or starts one; the worker records the trace id.
package tracecontext

import (
	"crypto/rand"
	"encoding/hex"
)

// Parent is one traceparent.
type Parent struct {
	TraceID string // 32 lowercase hex digits
	SpanID  string // 16
	Flags   string // 2
}

const zeroTrace = "00000000000000000000000000000000"

// Parse reads a version-00 traceparent; ok is false for anything else.
func Parse(s string) (p Parent, ok bool) {
	if len(s) != 55 || s[:3] != "00-" || s[35] != '-' || s[52] != '-' {
		return Parent{}, false
	}
	p = Parent{TraceID: s[3:35], SpanID: s[36:52], Flags: s[53:55]}
	if !isHex(p.TraceID) || !isHex(p.SpanID) || !isHex(p.Flags) || p.TraceID == zeroTrace {
		return Parent{}, false
	}
	return p, true
}

// New starts a trace: a random trace id and span id, sampled.
func New() Parent {
	var b [16]byte
	rand.Read(b[:])
	return Parent{TraceID: hex.EncodeToString(b[:]), SpanID: newSpan(), Flags: "01"}
}

// Child is p continued by a new span.
func (p Parent) Child() Parent {
	p.SpanID = newSpan()
	return p
}

func (p Parent) String() string {
	return "00-" + p.TraceID + "-" + p.SpanID + "-" + p.Flags
}

// TraceID is the trace id of a traceparent header, "" when it is none.
func TraceID(header string) string {
	p, _ := Parse(header)
	return p.TraceID
}

func newSpan() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
