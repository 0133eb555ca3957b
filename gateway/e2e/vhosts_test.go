package e2e

import (
	"context"
	"errors"
	"sync"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// vhosts are the package's RabbitMQ vhosts, each lent to one test at a time.
// Making a vhost takes three rabbitmqctl runs, each an Erlang VM of a second
// or more of CPU; emptying one for the next test takes four AMQP calls.
var vhosts vhostPool

type vhostPool struct {
	mu   sync.Mutex
	free []string                      // AMQP URLs of empty vhosts
	dels []func(context.Context) error // delete every vhost made
}

// get lends t an empty vhost until its cleanup, making one if none is free.
func (p *vhostPool) get(t *testing.T) string {
	t.Helper()
	p.mu.Lock()
	url := ""
	if n := len(p.free); n > 0 {
		url, p.free = p.free[n-1], p.free[:n-1]
	}
	p.mu.Unlock()
	if url == "" {
		s, err := testenv.FromEnv()
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		var del func(context.Context) error
		if url, del, err = s.CreateVhost(ctx, testenv.Name("oo_e2e")); err != nil {
			t.Fatalf("create a vhost: %v", err)
		}
		p.mu.Lock()
		p.dels = append(p.dels, del)
		p.mu.Unlock()
	}
	// Registered before the test starts its processes, so run after they
	// stopped.
	t.Cleanup(func() {
		if err := empty(url); err != nil {
			t.Logf("vhost %s not emptied, not lent again: %v", url, err)
			return
		}
		p.mu.Lock()
		p.free = append(p.free, url)
		p.mu.Unlock()
	})
	return url
}

// empty deletes the topology that amqpx.Declare made in a vhost, and so its
// messages: the vhost is then as new.
func empty(url string) error {
	conn, err := amqp.Dial(url)
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	for _, q := range []string{amqpx.Queue, amqpx.DeadQueue} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return err
		}
	}
	for _, x := range []string{amqpx.Exchange, amqpx.DeadExchange} {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			return err
		}
	}
	return nil
}

// close deletes every vhost the pool made.
func (p *vhostPool) close(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, del := range p.dels {
		errs = append(errs, del(ctx))
	}
	return errors.Join(errs...)
}
