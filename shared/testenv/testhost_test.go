package testenv

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// ping sends a Redis PING on c and reads the answer, waiting up to wait.
func ping(c net.Conn, r *bufio.Reader, wait time.Duration) (string, error) {
	c.SetDeadline(time.Now().Add(wait))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return "", err
	}
	return r.ReadString('\n')
}

// A cut link drops everything silently: a new connection's dial times out
// (no refusal, no "unreachable") and an open one hears nothing, without
// being closed; once restored, a new dial works and the open connection
// gets its answer. Redis is the server behind the link.
func TestTestHostLinkCutAndRestored(t *testing.T) {
	RequireTestHosts(t)
	srv := servers(t)
	ctx := context.Background()
	h, err := NewTestHost(ctx, map[string]string{"redis": srv.RedisAddr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := h.Close(context.Background()); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat("/run/netns/" + h.Name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left after Close (%v)", h.Name, err)
		}
	})
	addr := h.Link("redis").Addr

	open, err := h.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	rd := bufio.NewReader(open)
	if got, err := ping(open, rd, 10*time.Second); err != nil || got != "+PONG\r\n" {
		t.Fatalf("PING through the link: %q, %v", got, err)
	}

	if err := h.Cut(ctx, "redis"); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = h.DialContext(dctx, "tcp", addr)
	cancel()
	if ne := net.Error(nil); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("dial over the cut link: %v, want it to wait until its deadline", err)
	}
	if got, err := ping(open, rd, 2*time.Second); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("PING on the open connection over the cut link: %q, %v, want no answer and no close", got, err)
	}

	if err := h.Restore(ctx, "redis"); err != nil {
		t.Fatal(err)
	}
	c, err := h.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial over the restored link: %v", err)
	}
	defer c.Close()
	if got, err := ping(c, bufio.NewReader(c), 10*time.Second); err != nil || got != "+PONG\r\n" {
		t.Fatalf("PING on a new connection over the restored link: %q, %v", got, err)
	}
	// The open connection's PING sent during the cut is retransmitted and
	// answered; then one more.
	open.SetDeadline(time.Now().Add(30 * time.Second))
	if got, err := rd.ReadString('\n'); err != nil || got != "+PONG\r\n" {
		t.Fatalf("the PING sent during the cut, after the restore: %q, %v", got, err)
	}
	if got, err := ping(open, rd, 10*time.Second); err != nil || got != "+PONG\r\n" {
		t.Fatalf("PING on the open connection after the restore: %q, %v", got, err)
	}
}

// A stack whose gateway and worker run on test hosts serves through their
// links; with the gateway's Redis link cut, a createCustomer is answered 503
// and does nothing, and once the link is back the same call creates the
// customer. Close removes the namespaces.
func TestStackOnTestHosts(t *testing.T) {
	RequireTestHosts(t)
	t.Parallel()
	s, prefix := servers(t), Name("oo_th")
	st, err := s.UpStack(t.Context(), StackConfig{Name: prefix, Hosts: []string{"gateway", "worker-1"}})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	defer func() {
		if !closed {
			st.Close(0)
		}
	}()
	gw, w := st.Host("gateway"), st.Host("worker-1")
	if gw == nil || w == nil || !strings.HasPrefix(st.HTTPAddr, gw.Front+":") {
		t.Fatalf("hosts %v, %v; gateway on %s", gw, w, st.HTTPAddr)
	}
	call := func(id string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, st.URL(), strings.NewReader(fmt.Sprintf(stackCreateCustomer, id)))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("x-api-key", st.Key)
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, body := call("T1"); code != http.StatusOK {
		t.Fatalf("createCustomer over the links: %d %s\ngateway:\n%s", code, body, st.Gateway.Log())
	}

	if err := gw.Cut(t.Context(), LinkRedis); err != nil {
		t.Fatal(err)
	}
	code, body := call("T2")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"unavailable"`) {
		t.Fatalf("createCustomer with the gateway's Redis link cut: %d %s, want 503 unavailable", code, body)
	}
	if err := gw.Restore(t.Context(), LinkRedis); err != nil {
		t.Fatal(err)
	}
	// The gateway may meet a connection that died with the cut once more
	// (503 again) before it dials a new one.
	for try := 1; ; try++ {
		code, body = call("T2")
		if code == http.StatusOK || try == 20 || code != http.StatusServiceUnavailable {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if code != http.StatusOK {
		t.Fatalf("createCustomer T2 after the restore: %d %s, want 200 (the 503 did nothing)", code, body)
	}

	names := []string{gw.Name, w.Name}
	closed = true
	if err := st.Close(0); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for _, n := range names {
		if _, err := os.Stat("/run/netns/" + n); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s left after Close (%v)", n, err)
		}
	}
}
