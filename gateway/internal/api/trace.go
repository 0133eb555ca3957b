package api

import (
	"crypto/rand"
	"encoding/hex"
)

// traceparent continues the partner's W3C trace (version 00) with a new span id
// for the gateway, or starts a new trace. The command carries it and the worker
// logs it, so one call can be followed across processes.
func traceparent(in string) string {
	var b [24]byte
	rand.Read(b[:])
	span := hex.EncodeToString(b[16:])
	if len(in) == 55 && in[:3] == "00-" && in[35] == '-' && in[52] == '-' &&
		isHex(in[3:35]) && isHex(in[36:52]) && isHex(in[53:55]) &&
		in[3:35] != "00000000000000000000000000000000" {
		return in[:36] + span + in[52:]
	}
	return "00-" + hex.EncodeToString(b[:16]) + "-" + span + "-01"
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
