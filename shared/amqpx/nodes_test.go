package amqpx

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"

	"github.com/oneoffice/provisioner/shared/testenv"
)

func TestNodesSplitsAListOfURLs(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want []string
	}{
		{"amqp://guest:guest@127.0.0.1:5672/", []string{"amqp://guest:guest@127.0.0.1:5672/"}},
		{"amqp://g:g@h1:5672/v,amqp://g:g@h2:5673/v", []string{"amqp://g:g@h1:5672/v", "amqp://g:g@h2:5673/v"}},
		{" amqp://h1/v , amqps://h2/v,amqp://h3/v ", []string{"amqp://h1/v", "amqps://h2/v", "amqp://h3/v"}},
		// A comma not followed by a scheme belongs to the URL (here a password).
		{"amqp://u:a,b@h1/v,amqp://u:a,b@h2/v", []string{"amqp://u:a,b@h1/v", "amqp://u:a,b@h2/v"}},
	}
	for _, tt := range tests {
		if got := Nodes(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Nodes(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// deadURL is the URL of a loopback port that nothing listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return fmt.Sprintf("amqp://guest:guest@%s/", addr)
}

// TestDialPassesOverADeadNode lists a dead node and a live one: every dial,
// whichever order the shuffle picks, connects to the live one and declares the
// topology there.
func TestDialPassesOverADeadNode(t *testing.T) {
	t.Parallel()
	live := testenv.Vhost(t)
	list := deadURL(t) + "," + live
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for i := range 8 {
		conn, err := Dial(context.Background(), list, log)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		ch, err := conn.Channel()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ch.QueueDeclarePassive(Queue, true, false, false, false, nil); err != nil {
			t.Errorf("dial %d: the command queue was not declared: %v", i, err)
		}
		conn.Close()
	}
}

// TestDialWithEveryNodeDeadWaitsForItsContext: nothing answers, so Dial keeps
// trying until its context ends and then reports that.
func TestDialWithEveryNodeDeadWaitsForItsContext(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	log := slog.New(&cancelOnWarn{Handler: slog.NewTextHandler(io.Discard, nil), cancel: cancel})
	conn, err := Dial(ctx, deadURL(t)+","+deadURL(t), log)
	if err == nil {
		conn.Close()
		t.Fatal("Dial connected with every node dead")
	}
}

// cancelOnWarn cancels the dial's context at its first failed attempt.
type cancelOnWarn struct {
	slog.Handler
	cancel context.CancelFunc
}

func (h *cancelOnWarn) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.cancel()
	}
	return h.Handler.Handle(ctx, r)
}
