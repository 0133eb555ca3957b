package testenv

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v4"
	amqp "github.com/rabbitmq/amqp091-go"
)

// rabbitmqctlTimeout bounds one rabbitmqctl run: right after a broker restart
// the CLI can wait a long time for a node that is still booting.
const rabbitmqctlTimeout = 30 * time.Second

// CreateVhost creates the RabbitMQ vhost name, gives the URL's user every
// permission on it, checks that the user can connect to it and returns its
// AMQP URL and the function that deletes it again. On error nothing is left.
func (s Servers) CreateVhost(ctx context.Context, name string) (amqpURL string, del func(context.Context) error, err error) {
	if !validName.MatchString(name) {
		return "", nil, fmt.Errorf("vhost name %q: want lower-case letters, digits and _", name)
	}
	u, err := amqp.ParseURI(s.AMQPURL)
	if err != nil {
		return "", nil, fmt.Errorf("AMQP URL: %w", err)
	}
	del = func(ctx context.Context) error { return s.rabbitmqctl(ctx, "delete_vhost", name) }
	amqpURL = strings.TrimSuffix(s.AMQPURL, "/") + "/" + name
	if err := s.rabbitmqctl(ctx, "add_vhost", name); err != nil {
		return "", nil, err
	}
	err = s.rabbitmqctl(ctx, "set_permissions", "-p", name, u.Username, ".*", ".*", ".*")
	if err == nil {
		err = s.dialAMQP(ctx, amqpURL)
	}
	if err != nil {
		return "", nil, errors.Join(err, del(context.WithoutCancel(ctx)))
	}
	return amqpURL, del, nil
}

// rabbitmqctl runs the CLI until it succeeds. Every command used here is
// idempotent (add_vhost of an existing vhost succeeds), except that
// delete_vhost of a vhost already gone reports it, which counts as done.
func (s Servers) rabbitmqctl(ctx context.Context, args ...string) error {
	what := "RabbitMQ (rabbitmqctl " + strings.Join(args, " ") + ")"
	return s.retry(ctx, what, func(ctx context.Context, _ int) error {
		ctx, cancel := context.WithTimeout(ctx, rabbitmqctlTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "rabbitmqctl", args...)
		// The CLI's Erlang children may hold the output open after a kill.
		cmd.WaitDelay = 5 * time.Second
		out, err := cmd.CombinedOutput()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, exec.ErrNotFound):
			return backoff.Permanent(err)
		case args[0] == "delete_vhost" && bytes.Contains(out, []byte("does not exist")):
			return nil
		}
		return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
	})
}

// dialAMQP connects to url once it can: the broker's listener comes up after
// the node answers rabbitmqctl.
func (s Servers) dialAMQP(ctx context.Context, url string) error {
	return s.retry(ctx, "RabbitMQ at "+redactURL(url)+" (TEST_AMQP_URL)", func(ctx context.Context, _ int) error {
		conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(attemptTimeout)})
		if err != nil {
			return err
		}
		return conn.Close()
	})
}

// Vhost creates a RabbitMQ vhost for the user of TEST_AMQP_URL and returns its
// AMQP URL; it is deleted at cleanup. The test fails if RabbitMQ does not
// answer.
func Vhost(t testing.TB) string {
	t.Helper()
	s := servers(t)
	ctx, cancel := context.WithTimeout(context.Background(), s.cleanupLimit())
	defer cancel()
	amqpURL, del, err := s.CreateVhost(ctx, Name("oo_test"))
	if err != nil {
		t.Fatalf("create a vhost: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), s.cleanupLimit())
		defer cancel()
		if err := del(ctx); err != nil {
			t.Errorf("delete the test vhost: %v", err)
		}
	})
	return amqpURL
}
