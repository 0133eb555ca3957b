package faults

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// Chaos is the fault suite (make chaos): the provisioner under load while
// its processes and servers fail, one fault at a time. The servers are
// private to the run, so that they may be restarted and flushed: a RabbitMQ
// node (with a heartbeat of a few seconds so that a frozen worker is dropped
// soon), a redis-server and a PostgreSQL cluster on free loopback ports. On
// them run one gateway and three workers with two partners. The faults:
//
//   - a worker killed with SIGKILL, then a replacement started;
//   - a worker stopped with SIGTERM (it must drain and exit cleanly), then
//     a replacement started;
//   - a worker frozen with SIGSTOP until the broker drops its connection,
//     then continued with SIGCONT: it must serve again by itself;
//   - poison messages, malformed and forged commands published straight to
//     the command queue: each must be dead-lettered and change nothing;
//   - a broker memory alarm, raised and cleared;
//   - the broker restarted;
//   - Redis flushed, then Redis restarted (empty);
//   - PostgreSQL restarted;
//   - partitions, one link cut for 20s and healed (partition.go): the
//     gateway's to RabbitMQ, a worker's to RabbitMQ and to PostgreSQL, the
//     gateway's to Redis and to PostgreSQL.
//
// Recovery is timed from the end of each fault. Besides the common checks,
// the last answered state of every order must be the one in the database,
// and no process may have needed a restart.
var Chaos = &suite{name: "chaos", rate: 150, flows: 32, setup: chaosServers, judge: judgeChaos, report: reportChaos,
	faults: []fault{
		{name: "worker-kill9", inject: killWorker(syscall.SIGKILL), after: replaceWorker},
		{name: "worker-term", inject: killWorker(syscall.SIGTERM), after: replaceWorker},
		{name: "worker-stop", inject: freezeWorker},
		{name: "poison", inject: publishPoison},
		{name: "memory-alarm", inject: memoryAlarm},
		{name: "broker-restart", inject: func(ctx context.Context, r *run, fr *faultRun) error {
			fr.note = "rabbitmqctl stop, the node booted again"
			return r.nodes[0].Restart(ctx)
		}},
		{name: "redis-flush", inject: func(ctx context.Context, r *run, fr *faultRun) error {
			c := redis.NewClient(&redis.Options{Addr: r.redis.Addr})
			defer c.Close()
			fr.note = "FLUSHALL"
			return c.FlushAll(ctx).Err()
		}},
		{name: "redis-restart", inject: func(ctx context.Context, r *run, fr *faultRun) error {
			fr.note = fmt.Sprintf("down %s, back empty", serverDown)
			return r.redis.Restart(ctx, serverDown)
		}},
		{name: "postgres-restart", inject: func(ctx context.Context, r *run, fr *faultRun) error {
			fr.note = fmt.Sprintf("fast shutdown, down %s", serverDown)
			return r.pg.Restart(ctx, serverDown)
		}},
	}}

func init() { Chaos.faults = append(Chaos.faults, partitionFaults...) }

// heartbeat is the AMQP heartbeat the broker offers, in seconds: the
// clients take the smaller of theirs and it, and the broker drops a
// connection silent for about twice as long.
const heartbeat = 3

// serverDown is how long Redis and PostgreSQL stay down when restarted, so
// that calls meet the server gone and not only their connections cut.
const serverDown = 5 * time.Second

// chaosServers starts the private RabbitMQ node, Redis server and
// PostgreSQL cluster, and one gateway and three workers on them.
func chaosServers(ctx context.Context, r *run) error {
	t0 := time.Now()
	var err error
	if r.pg, err = testenv.StartPostgresCluster(ctx); err != nil {
		return err
	}
	r.td.Add("stop the PostgreSQL cluster", r.pg.Stop)
	if r.redis, err = testenv.StartRedisServer(ctx); err != nil {
		return err
	}
	r.td.Add("stop the Redis server", r.redis.Stop)
	rabbit, err := testenv.StartRabbitNode(ctx, fmt.Sprintf("heartbeat = %d", heartbeat))
	if err != nil {
		return err
	}
	r.nodes = []*testenv.RabbitNode{rabbit}
	r.td.Add("stop the RabbitMQ node", rabbit.Stop)
	amqpURL, err := rabbit.Vhost(ctx, r.vhost)
	if err != nil {
		return err
	}
	r.logf("private servers up in %s: PostgreSQL on port %d, Redis on %s, RabbitMQ %s on port %d",
		time.Since(t0).Round(time.Millisecond), r.pg.Port, r.redis.Addr, rabbit.Name, rabbit.Port)
	hosts, err := r.wantPartitions()
	if err != nil {
		return err
	}
	srv := testenv.Servers{PostgresURL: r.pg.URL, RedisAddr: r.redis.Addr, Wait: testenv.DefaultWait}
	return r.upStack(ctx, srv, testenv.StackConfig{Workers: 3, AMQPURL: amqpURL, Hosts: hosts}, 8)
}

// liveWorker is the first worker that is running, of those on loopback (the
// one on a test host is kept for the partitions).
func (r *run) liveWorker() (*testenv.Proc, error) {
	for _, w := range r.st.Workers {
		if !w.Exited() && r.st.Host(w.Name) == nil {
			return w, nil
		}
	}
	return nil, errors.New("no worker is running")
}

// killWorker sends sig to a worker; for SIGTERM it waits for the worker to
// drain and exit, which must be clean.
func killWorker(sig syscall.Signal) func(context.Context, *run, *faultRun) error {
	return func(ctx context.Context, r *run, fr *faultRun) error {
		w, err := r.liveWorker()
		if err != nil {
			return err
		}
		fr.note = fmt.Sprintf("%s pid %d", w.Name, w.Pid())
		if sig == syscall.SIGTERM {
			start := time.Now()
			if err := w.Stop(ctx); err != nil {
				return fmt.Errorf("SIGTERM: %w", err)
			}
			fr.note += fmt.Sprintf(" drained and exited 0 in %s", time.Since(start).Round(time.Millisecond))
			return nil
		}
		if err := syscall.Kill(w.Pid(), sig); err != nil {
			return err
		}
		<-w.Done()
		return nil
	}
}

// replaceWorker starts a new worker for the one lost.
func replaceWorker(ctx context.Context, r *run, _ *faultRun) error {
	w, err := r.st.AddWorker(ctx)
	if err != nil {
		return fmt.Errorf("replacement worker: %w", err)
	}
	r.logf("replacement %s pid %d ready", w.Name, w.Pid())
	return nil
}

// freezeWorker stops a worker with SIGSTOP until the broker has dropped one
// of the vhost's connections (the worker's: nothing else is silent), then
// continues it; the worker must get ready again by itself.
func freezeWorker(ctx context.Context, r *run, fr *faultRun) error {
	w, err := r.liveWorker()
	if err != nil {
		return err
	}
	rabbit := r.nodes[0]
	connections := func() (int, error) {
		on, err := rabbit.Connections(ctx, r.vhost)
		return on[rabbit.Port], err
	}
	before, err := connections()
	if err != nil {
		return err
	}
	if err := syscall.Kill(w.Pid(), syscall.SIGSTOP); err != nil {
		return err
	}
	start := time.Now()
	wait, cancel := context.WithTimeout(ctx, 6*heartbeat*time.Second+10*time.Second)
	defer cancel()
	dropped := backoff.Retry(func() error {
		if n, err := connections(); err != nil || n >= before {
			return fmt.Errorf("%d connections (%v)", n, err)
		}
		return nil
	}, backoff.WithContext(backoff.NewConstantBackOff(250*time.Millisecond), wait)) == nil
	took := time.Since(start).Round(100 * time.Millisecond)
	if err := syscall.Kill(w.Pid(), syscall.SIGCONT); err != nil {
		return err
	}
	fr.note = fmt.Sprintf("%s pid %d frozen %s", w.Name, w.Pid(), took)
	if !dropped {
		return fmt.Errorf("the broker did not drop the frozen worker's connection within %s (%d connections)", took, before)
	}
	if err := w.WaitReady(ctx); err != nil {
		return fmt.Errorf("the continued worker is not ready again: %w", err)
	}
	fr.note += ", dropped by the broker, ready again"
	return nil
}

// memoryAlarm raises the broker's memory alarm for half a phase, then
// clears it.
func memoryAlarm(ctx context.Context, r *run, fr *faultRun) error {
	if err := r.nodes[0].Ctl(ctx, "set_vm_memory_high_watermark", "absolute", "10MB"); err != nil {
		return err
	}
	partnerload.Sleep(ctx, r.cfg.Phase/2)
	fr.note = fmt.Sprintf("held %s", r.cfg.Phase/2)
	return r.nodes[0].Ctl(ctx, "set_vm_memory_high_watermark", "0.4")
}

func judgeChaos(ctx context.Context, r *run) []error {
	return append(append(r.judgePoison(ctx), r.judgeProcesses(ctx)...), r.judgePartitions()...)
}

// judgeProcesses checks that the gateway and every worker not killed on
// purpose still run, as the same processes, and are ready: nothing needed a
// restart.
func (r *run) judgeProcesses(ctx context.Context) []error {
	var errs []error
	lost := 0
	for _, p := range append(r.st.Workers[:len(r.st.Workers):len(r.st.Workers)], r.st.Gateway) {
		if p.Exited() {
			lost++
		} else if !p.Ready(ctx) {
			errs = append(errs, fmt.Errorf("%s (pid %d) is not ready after the run", p.Name, p.Pid()))
		}
	}
	want := 0 // the workers killed and stopped on purpose
	for _, f := range r.faults {
		if f.name == "worker-kill9" || f.name == "worker-term" {
			want++
		}
	}
	if lost != want {
		errs = append(errs, fmt.Errorf("%d processes exited during the run, want %d (the workers killed and stopped)", lost, want))
	}
	return errs
}

func reportChaos(w io.Writer, r *run) {
	fmt.Fprintf(w, "AMQP heartbeat: %ds\n", heartbeat)
	if r.poison != nil {
		fmt.Fprintf(w, "poison messages: %d dead-lettered, none took effect: %v\n", len(r.poison.kinds), r.poison.kinds)
	}
	fmt.Fprintf(w, "202'd calls repeated after Redis lost their record, answered from the ledger: %d\n", r.replays)
	r.reportPartitions(w)
}
