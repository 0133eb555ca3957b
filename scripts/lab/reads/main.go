// Package reads is `lab reads`: the latency of the reads the gateway answers
// beside the command queue (getOrder, getRequest), with the workers at their
// peak and with every worker stopped behind a backlog of queued commands,
// and the cost of a page of listOrders over 100,000 orders of one partner,
// with the plans PostgreSQL chose.
//
// It brings up its own isolated stack on the shared loopback servers with
// the tests' harness (shared/testenv): a fresh database, vhost and Redis DB,
// -workers workers and one gateway built from this tree, started with
// RPC_TIMEOUT=-rpc-timeout (a short one queues the backlog faster; a read
// slower than it would be a 503, counted). Then:
//
//  1. quiet: -rate reads a second (half getOrder, half getRequest of
//     recorded calls) for -duration, nothing else running;
//
//  2. peak: the same while -inflight createFirstOrder commands are kept in
//     flight, the workers' peak (the commands' rate is reported);
//
//  3. backlog: every worker stopped, -backlog createCustomer commands sent
//     (each answered 202, left in the queue; the queue's depth is read from
//     the broker), then the same reads;
//
//  4. list: 100,000 orders of the partner written in SQL, analysed, then
//     -pages calls of each listOrders shape through the gateway, and the
//     plans (EXPLAIN ANALYZE) of the statements shared/reads ran for them.
//
//     go run ./scripts/lab reads [-duration 20s] [-rate 200] [-backlog 20000]
//     [-inflight 64] [-workers 2] [-orders 100000]
package reads

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/oneoffice/provisioner/scripts/lab/load"
	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/testenv"
)

type config struct {
	duration   time.Duration
	rate       float64
	backlog    int
	sendConns  int
	inflight   int
	workers    int
	orders     int
	pages      int
	rpcTimeout time.Duration
	skipReads  bool
	stack      load.StackFlags
}

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("reads", flag.ContinueOnError)
	if err := c.stack.Register(fs); err != nil {
		return c, err
	}
	fs.DurationVar(&c.duration, "duration", 20*time.Second, "length of each measured phase of reads")
	fs.Float64Var(&c.rate, "rate", 200, "reads a second (half getOrder, half getRequest)")
	fs.IntVar(&c.backlog, "backlog", 20000, "commands left in the queue with every worker stopped")
	fs.IntVar(&c.sendConns, "send-conns", 1000, "connections the backlog is sent over")
	fs.IntVar(&c.inflight, "inflight", 64, "commands kept in flight for the workers' peak")
	fs.IntVar(&c.workers, "workers", 2, "worker processes")
	fs.IntVar(&c.orders, "orders", 100000, "orders of the partner for the listOrders pages (0: skip)")
	fs.IntVar(&c.pages, "pages", 200, "calls of each listOrders shape")
	fs.DurationVar(&c.rpcTimeout, "rpc-timeout", time.Second, "RPC_TIMEOUT of the gateway")
	fs.BoolVar(&c.skipReads, "list-only", false, "skip the phases of reads (quiet, peak, backlog)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.duration <= 0 || c.rate <= 0 || c.backlog < 0 || c.sendConns < 1 || c.inflight < 1 || c.workers < 1 || c.orders < 0 || c.pages < 1 {
		return c, errors.New("-duration, -rate, -send-conns, -inflight, -workers and -pages must be positive; -backlog and -orders at least 0")
	}
	return c, c.stack.Validate()
}

// Run runs the measurement with the command line args.
func Run(ctx context.Context, args []string) error {
	cfg, err := parseFlags(args)
	if err != nil {
		return err
	}
	return measure(ctx, cfg)
}

func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "reads: "+format+"\n", args...)
}

// seedOrders is how many orders the reads ask for (getOrder) and how many
// recorded calls (getRequest).
const seedOrders = 200

func measure(ctx context.Context, cfg config) (err error) {
	st, err := cfg.stack.Up(ctx, testenv.StackConfig{Name: "reads", Workers: cfg.workers,
		Env: []string{"RPC_TIMEOUT=" + cfg.rpcTimeout.String()}}, progress)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close(testenv.DefaultCloseTimeout)) }()
	c := newClient(st.HTTPAddr, st.Key, max(cfg.sendConns, cfg.inflight, 64))
	progress("seed: a customer, %d orders", seedOrders)
	if s := c.call(`{"method":"createCustomer","params":{"id":"C1","name":"Reads Co","admin":{"email":"a@example.com"}}}`, ""); s != "" {
		return fmt.Errorf("createCustomer: %s", s)
	}
	for i := range seedOrders {
		if s := c.call(fmt.Sprintf(`{"method":"createFirstOrder","params":{"customer":"C1","id":"S%d","product":"oo-std","licenses":1,"duration":"monthly"}}`, i),
			fmt.Sprint("seed-", i)); s != "" {
			return fmt.Errorf("createFirstOrder S%d: %s", i, s)
		}
	}
	w := os.Stdout
	if cfg.skipReads {
		return listPhase(ctx, w, c, st, cfg)
	}
	fmt.Fprintf(w, "lab reads, %s: %d workers, RPC_TIMEOUT %s, reads at %.0f/s for %s per phase (half getOrder, half getRequest)\n",
		time.Now().UTC().Format(time.DateTime), cfg.workers, cfg.rpcTimeout, cfg.rate, cfg.duration)
	fmt.Fprintf(w, "%-9s %-11s %7s %8s %8s %8s %s\n", "phase", "method", "calls", "p50", "p99", "max", "not 200")

	progress("quiet: %s", cfg.duration)
	report(w, "quiet", readPhase(ctx, c, cfg))

	progress("peak: %d commands in flight, %s", cfg.inflight, cfg.duration)
	peakCtx, stopPeak := context.WithCancel(ctx)
	peak := make(chan *load.Recorder, 1)
	var seq int64
	go func() {
		peak <- load.Closed(peakCtx, func(context.Context) string {
			n := atomicAdd(&seq)
			return c.call(fmt.Sprintf(`{"method":"createFirstOrder","params":{"customer":"C1","id":"P%d","product":"oo-lite","licenses":1,"duration":"yearly"}}`, n), "")
		}, cfg.inflight, cfg.duration+2*time.Second)
	}()
	time.Sleep(time.Second) // the workers at their peak before the reads start
	reads := readPhase(ctx, c, cfg)
	stopPeak()
	cmds := <-peak
	report(w, "peak", reads)
	fmt.Fprintf(w, "%-9s %-11s %7d %8s %8s %8s %v (%.0f commands/s)\n", "peak", "commands", len(cmds.Latencies(true)),
		ms(load.Percentile(cmds.Latencies(false), 50)), ms(load.Percentile(cmds.Latencies(false), 99)),
		ms(last(cmds.Latencies(false))), cmds.Labels(), float64(len(cmds.Latencies(false)))/cmds.Elapsed.Seconds())

	for i, wk := range st.Workers {
		progress("backlog: stopping worker %d", i+1)
		if err := wk.Stop(ctx); err != nil {
			return err
		}
	}
	progress("backlog: sending %d commands over %d connections", cfg.backlog, cfg.sendConns)
	sent := sendBacklog(c, cfg.backlog, cfg.sendConns)
	depth, err := queueDepth(st.AMQPURL)
	if err != nil {
		return err
	}
	progress("backlog: %d commands in the queue; reads for %s", depth, cfg.duration)
	reads = readPhase(ctx, c, cfg)
	after, err := queueDepth(st.AMQPURL)
	if err != nil {
		return err
	}
	report(w, "backlog", reads)
	fmt.Fprintf(w, "backlog: %d commands sent in %s (%v not 202), %d in the queue before the reads, %d after, no worker running\n",
		len(sent.Latencies(true)), sent.Elapsed.Round(time.Millisecond), sent.Labels(), depth, after)

	if cfg.orders > 0 {
		return listPhase(ctx, w, c, st, cfg)
	}
	return nil
}

// sendBacklog sends n createCustomer commands over conns connections; a
// 202 (queued, no worker) is the success.
func sendBacklog(c *client, n, conns int) *load.Recorder {
	rec := load.NewRecorder()
	next := make(chan int)
	var wg sync.WaitGroup
	start := time.Now()
	for range conns {
		wg.Go(func() {
			for i := range next {
				t := time.Now()
				rec.Add(c.callWant(fmt.Sprintf(`{"method":"createCustomer","params":{"id":"B%d","name":"Backlog","admin":{"email":"b@example.com"}}}`, i), "", 202), time.Since(t))
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	rec.Elapsed = time.Since(start)
	return rec
}

// readPhase sends getOrder and getRequest of seeded orders and calls at
// cfg.rate for cfg.duration, open loop.
func readPhase(ctx context.Context, c *client, cfg config) map[string]*load.Recorder {
	methods := []string{"getOrder", "getRequest"}
	recs := make([]*load.Recorder, len(methods))
	var wg sync.WaitGroup
	for k, m := range methods {
		wg.Go(func() {
			var i int64
			recs[k] = load.Open(ctx, func(context.Context) string {
				n := atomicAdd(&i) % seedOrders
				if m == "getOrder" {
					return c.call(fmt.Sprintf(`{"method":"getOrder","params":{"id":"S%d"}}`, n), "")
				}
				return c.call(fmt.Sprintf(`{"method":"getRequest","params":{"id":"seed-%d"}}`, n), "")
			}, cfg.rate/2, cfg.duration, 4096)
		})
	}
	wg.Wait()
	return map[string]*load.Recorder{methods[0]: recs[0], methods[1]: recs[1]}
}

func report(w io.Writer, phase string, recs map[string]*load.Recorder) {
	for _, m := range []string{"getOrder", "getRequest"} {
		r := recs[m]
		lat := r.Latencies(false)
		fmt.Fprintf(w, "%-9s %-11s %7d %8s %8s %8s %v\n", phase, m, len(r.Latencies(true)),
			ms(load.Percentile(lat, 50)), ms(load.Percentile(lat, 99)), ms(last(lat)), r.Labels())
	}
}

// queueDepth reads the number of commands waiting in the stack's queue.
func queueDepth(url string) (int, error) {
	conn, err := amqp.Dial(url)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(amqpx.Queue, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum})
	return q.Messages, err
}

func ms(d time.Duration) string {
	return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
}

func last(sorted []time.Duration) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[len(sorted)-1]
}
