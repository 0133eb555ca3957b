package reads

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/oneoffice/provisioner/shared/protocol"
)

// A cursor is the position of the last row of a page in its list's order,
// opaque to partners: base64url(JSON position) "." base64url(MAC), where the
// MAC is HMAC-SHA256, under a key kept in the database (read_cursor_key,
// the same for every process), over the list, the partner, the list's
// filters and the position. A cursor given to another partner, or sent
// with other filters or to another list, or altered, fails the MAC and is a
// 400 naming params.cursor; its position is read only once the MAC holds.
//
// A position holds no internal id: customers go by their number among the
// partner's, orders by (creation time, the partner's id), users by (creation
// time, email), calls by (creation time, command id).

// position is where the next page starts: after the row at (N, S).
type position struct {
	N int64  `json:"n"` // a customer's number, or a creation time in Unix microseconds
	S string `json:"s,omitempty"`
}

// macLen is the bytes of the MAC a cursor carries: 128 bits.
const macLen = 16

func badCursor(method string) *protocol.Error {
	return protocol.InvalidParams("params.cursor", "params.cursor must be the nextCursor of a page of "+method+
		" with the same filters, given to the same partner; call without a cursor to start again")
}

// binding is what a cursor is bound to besides its position: the list, the
// partner and the values of the filters, in a fixed order.
func binding(q *query, filters ...any) []byte {
	b, _ := json.Marshal(filters)
	return []byte(q.method + "\x00" + strconv.FormatInt(q.partner, 10) + "\x00" + string(b))
}

func (r *Reader) mac(ctx context.Context, bind, payload []byte) ([]byte, error) {
	key, err := r.cursorKey(ctx)
	if err != nil {
		return nil, err
	}
	h := hmac.New(sha256.New, key)
	h.Write(bind)
	h.Write([]byte{0})
	h.Write(payload)
	return h.Sum(nil)[:macLen], nil
}

// encodeCursor makes the cursor of the page that ends at pos.
func (r *Reader) encodeCursor(ctx context.Context, q *query, pos position, filters ...any) (*string, error) {
	payload, _ := json.Marshal(pos)
	sum, err := r.mac(ctx, binding(q, filters...), payload)
	if err != nil {
		return nil, err
	}
	s := base64.RawURLEncoding.EncodeToString(payload) + "." + base64.RawURLEncoding.EncodeToString(sum)
	return &s, nil
}

// decodeCursor checks cursor against the call's list, partner and filters
// and returns its position; no cursor is the start of the list (nil).
func (r *Reader) decodeCursor(ctx context.Context, q *query, cursor *string, filters ...any) (*position, error) {
	if cursor == nil {
		return nil, nil
	}
	p64, m64, ok := strings.Cut(*cursor, ".")
	payload, err1 := base64.RawURLEncoding.DecodeString(p64)
	got, err2 := base64.RawURLEncoding.DecodeString(m64)
	if !ok || err1 != nil || err2 != nil || len(got) != macLen {
		return nil, badCursor(q.method)
	}
	want, err := r.mac(ctx, binding(q, filters...), payload)
	if err != nil {
		return nil, err
	}
	if !hmac.Equal(got, want) {
		return nil, badCursor(q.method)
	}
	var pos position
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pos); err != nil {
		// Made by this service and then not decodable: a bug, not the
		// partner's doing.
		return nil, fmt.Errorf("reads: a cursor with a valid MAC does not decode: %w", err)
	}
	return &pos, nil
}

// cursorKey reads the cursors' key once; a failure is retried by the next
// call.
func (r *Reader) cursorKey(ctx context.Context) ([]byte, error) {
	r.keyMu.Lock()
	defer r.keyMu.Unlock()
	if r.key != nil {
		return r.key, nil
	}
	var key []byte
	if err := r.db.QueryRow(ctx, `SELECT secret FROM read_cursor_key`).Scan(&key); err != nil {
		return nil, fmt.Errorf("read the cursor key: %w", err)
	}
	r.key = key
	return key, nil
}
