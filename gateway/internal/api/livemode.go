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

// sendBody writes body as the answer's body with the livemode field of c's
// key added to its top-level object: last, so that the fields partners
// match come first as they were. A body that is not an object, or a call
// whose key is not known, is written as it is. The parts are appended to
// the response's own buffer: no copy of the body is made for it.
func sendBody(c *fiber.Ctx, body []byte) error {
	live, ok := c.Locals(liveKey{}).(bool)
	if !ok {
		return c.Send(body)
	}
	end := len(bytes.TrimRight(body, " \t\r\n")) - 1
	if end < 1 || body[0] != '{' || body[end] != '}' {
		return c.Send(body)
	}
	field := liveTrue
	if !live {
		field = liveFalse
	}
	r := c.Response()
	r.SetBody(body[:end])
	if len(bytes.TrimSpace(body[1:end])) > 0 {
		r.AppendBodyString(",")
	}
	r.AppendBody(field)
	r.AppendBody(body[end:])
	return nil
}
