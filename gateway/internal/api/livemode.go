package api

import (
	"bytes"

	"github.com/gofiber/fiber/v2"

	"github.com/oneoffice/provisioner/gateway/internal/auth"
	"github.com/oneoffice/provisioner/gateway/internal/openapi"
	"github.com/oneoffice/provisioner/shared/protocol"
)

// Sandbox (SPEC section 6): once a call's key is known, every JSON object
// the gateway answers says whether it is live data ("livemode": true) or
// test data (false), and the OneOffice-Key header names the key's kind.
// Both are added in send, the one place every answer is written, so a
// stored idempotent answer replayed carries them as the first did.

// liveKey holds the call's key kind among the Fiber context's locals.
type liveKey struct{}

// markKey records k's kind for send and names it in the OneOffice-Key header.
func markKey(c *fiber.Ctx, k auth.Key) {
	kind := "live"
	if !k.Live {
		kind = "test"
	}
	if k.ReadOnly {
		kind += ", read-only"
	}
	c.Set(openapi.HeaderKey, kind)
	c.Locals(liveKey{}, k.Live)
}

// writes reports whether m changes something, so that a read-only key may
// not call it. replayEvent sends an event again: it counts as a write
// whatever the registry says of it.
func writes(m *protocol.Method) bool { return m.Mutates || m.Name == "replayEvent" }

var (
	liveTrue  = []byte(`"livemode":true`)
	liveFalse = []byte(`"livemode":false`)
)

// withLivemode returns body with the livemode field of c's key added to its
// top-level object: last, so that the fields partners match come first as
// they were. A body that is not an object, or a call whose key is not
// known, is returned as it is.
func withLivemode(c *fiber.Ctx, body []byte) []byte {
	live, ok := c.Locals(liveKey{}).(bool)
	if !ok {
		return body
	}
	end := len(bytes.TrimRight(body, " \t\r\n")) - 1
	if end < 1 || body[0] != '{' || body[end] != '}' {
		return body
	}
	field := liveTrue
	if !live {
		field = liveFalse
	}
	empty := len(bytes.TrimSpace(body[1:end])) == 0
	out := make([]byte, 0, len(body)+len(field)+1)
	out = append(out, body[:end]...)
	if !empty {
		out = append(out, ',')
	}
	out = append(out, field...)
	return append(out, body[end:]...)
}
