package e2e

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// adminRun is one run of an admin subcommand with what it read and wrote.
type adminRun struct {
	stdout, stderr string
	exit           int
}

// adminStdin runs a gateway admin subcommand with stdin as its standard
// input, and returns its output and exit status whatever they are.
func (s *Stack) adminStdin(stdin string, args ...string) adminRun {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bins.Gateway(), args...)
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		s.t.Fatalf("gateway %v: %v", args, err)
	}
	return adminRun{stdout: out.String(), stderr: errOut.String(), exit: cmd.ProcessState.ExitCode()}
}

// keyWorks reports whether the gateway takes key: a getCustomer of an unknown
// customer is 404 with a good key and 401 with a revoked one.
func (s *Stack) keyWorks(key string) bool {
	s.t.Helper()
	switch r := s.Do(key, envelope("getCustomer", m{"id": "NOPE"})); r.Status {
	case 404:
		return true
	case 401:
		return false
	default:
		s.t.Fatalf("getCustomer: %d %s", r.Status, r.Body)
		return false
	}
}

// SPEC section 9: keys revoke - reads the key from standard input, so that it
// stays out of the process list and the shell's history; the revoked key is
// refused within 5 s (SPEC section 6), the partner's other keys go on.
func TestKeysRevokeReadsTheKeyFromStdin(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	s.StartGateway()
	s.StartWorker()
	key := s.NewKey("Partner A")
	if !s.keyWorks(key) {
		t.Fatal("a new key is refused")
	}
	run := s.adminStdin(key+"\n", "keys", "revoke", "-")
	if run.exit != 0 || run.stdout != "" {
		t.Fatalf("keys revoke -: exit %d, stdout %q, stderr %q", run.exit, run.stdout, run.stderr)
	}
	// Refused within the auth cache's TTL (its own tests check the 5 s on a
	// fake clock); here only that the revocation takes effect.
	for deadline := time.Now().Add(settleWithin); s.keyWorks(key); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the revoked key still works %v after keys revoke -", settleWithin)
		}
	}
	if !s.keyWorks(s.Key) {
		t.Fatal("the partner's other key stopped working")
	}
}

// A key that revokes nothing is an error with a message that says why, and
// the key is not echoed: a mistyped key is still nearly a secret.
func TestKeysRevokeOfAnUnknownKeyFails(t *testing.T) {
	t.Parallel()
	s := NewStack(t)
	key := s.NewKey("Partner A")
	if run := s.adminStdin(key, "keys", "revoke", "-"); run.exit != 0 {
		t.Fatalf("first revoke: exit %d, stderr %q", run.exit, run.stderr)
	}
	for _, c := range []struct {
		name, stdin string
		args        []string
		message     string
	}{
		{"unknown key", "", []string{"keys", "revoke", "oo_not-a-key"}, "unknown or already revoked"},
		{"unknown key on stdin", "oo_not-a-key\n", []string{"keys", "revoke", "-"}, "unknown or already revoked"},
		{"key already revoked", key, []string{"keys", "revoke", "-"}, "unknown or already revoked"},
		{"nothing on stdin", "\n", []string{"keys", "revoke", "-"}, "no key given"},
	} {
		t.Run(c.name, func(t *testing.T) {
			run := s.adminStdin(c.stdin, c.args...)
			if run.exit == 0 || !strings.Contains(run.stderr, c.message) || run.stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr %q; want a failure saying %q", run.exit, run.stdout, run.stderr, c.message)
			}
			if strings.Contains(run.stderr, "oo_not-a-key") || strings.Contains(run.stderr, key) {
				t.Fatalf("the key is echoed: %q", run.stderr)
			}
		})
	}
}
