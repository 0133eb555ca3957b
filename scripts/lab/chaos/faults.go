package chaos

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/oneoffice/provisioner/scripts/internal/partnerload"
	"github.com/oneoffice/provisioner/shared/amqpx"
	"github.com/oneoffice/provisioner/shared/testenv"
)

// fault is one thing that goes wrong under load.
type fault struct {
	name string
	// inject does it, holds it as long as it lasts and undoes it; it
	// returns when the fault is over (the server back, the process
	// continued, or, for a process lost, at once) and what it has to say.
	inject func(ctx context.Context, r *runner) (string, error)
	// after, when set, runs once the gateway serves again: a lost worker
	// replaced, as its orchestrator would.
	after func(ctx context.Context, r *runner) error
}

// faultRun is what one fault did.
type faultRun struct {
	name   string
	note   string
	at     time.Time // injected
	back   time.Time // over
	err    error
	served bool // the gateway served again within the limit
	// recovery: from back until the gateway served again (the first served
	// call after the last unserved one), -1 if it never did; unserved: the
	// calls of the phase that were not served.
	recovery time.Duration
	unserved int
}

// serverDown is how long Redis and PostgreSQL stay down when restarted, so
// that calls meet the server gone and not only their connections cut.
const serverDown = 5 * time.Second

func faults() []fault {
	return []fault{
		{name: "worker-kill9", inject: killWorker(syscall.SIGKILL), after: replaceWorker},
		{name: "worker-term", inject: killWorker(syscall.SIGTERM), after: replaceWorker},
		{name: "worker-stop", inject: freezeWorker},
		{name: "poison", inject: publishPoison},
		{name: "memory-alarm", inject: memoryAlarm},
		{name: "broker-restart", inject: func(ctx context.Context, r *runner) (string, error) {
			return "rabbitmqctl stop, the node booted again", r.rabbit.Restart(ctx)
		}},
		{name: "redis-flush", inject: func(ctx context.Context, r *runner) (string, error) {
			c := redis.NewClient(&redis.Options{Addr: r.redis.Addr})
			defer c.Close()
			return "FLUSHALL", c.FlushAll(ctx).Err()
		}},
		{name: "redis-restart", inject: func(ctx context.Context, r *runner) (string, error) {
			return fmt.Sprintf("down %s, back empty", serverDown), r.redis.Restart(ctx, serverDown)
		}},
		{name: "postgres-restart", inject: func(ctx context.Context, r *runner) (string, error) {
			return fmt.Sprintf("fast shutdown, down %s", serverDown), r.pg.Restart(ctx, serverDown)
		}},
	}
}

func faultNames() []string {
	var names []string
	for _, f := range faults() {
		names = append(names, f.name)
	}
	return names
}

// drive runs the load through a steady phase, every fault and a last
// steady phase, then lets the queue drain and checks.
func (r *runner) drive(ctx context.Context) error {
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	r.ld.Run(loadCtx)
	partnerload.Sleep(ctx, r.cfg.Phase/2)
	var errs []error
	for _, f := range faults() {
		if ctx.Err() != nil {
			break
		}
		if r.cfg.only != nil && !r.cfg.only[f.name] {
			continue
		}
		fr := r.runFault(ctx, f)
		r.faults = append(r.faults, fr)
		if fr.err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.name, fr.err))
		}
	}
	r.ld.Mark("after")
	partnerload.Sleep(ctx, r.cfg.Phase/2)
	stopLoad()
	r.ld.Wait()
	logf("load stopped: %d calls; draining the queue", len(r.ld.Calls()))
	if err := r.drain(ctx); err != nil {
		return errors.Join(append(errs, err)...)
	}
	return errors.Join(append(errs, r.judge(ctx))...)
}

// runFault injects f in a phase of its own, waits until the gateway serves
// again (up to the limit and a little), runs f.after and lets the rest of
// the phase pass.
func (r *runner) runFault(ctx context.Context, f fault) *faultRun {
	fr := &faultRun{name: f.name}
	fr.at = r.ld.Mark(f.name)
	logf("fault %s", f.name)
	fr.note, fr.err = f.inject(ctx, r)
	fr.back = time.Now()
	fr.served = r.ld.AwaitServing(ctx, fr.back)
	logf("fault %s over after %s (%s), serving again: %v", f.name, fr.back.Sub(fr.at).Round(time.Millisecond), fr.note, fr.served)
	if f.after != nil && fr.err == nil {
		fr.err = f.after(ctx, r)
	}
	partnerload.Sleep(ctx, time.Until(fr.at.Add(r.cfg.Phase)))
	return fr
}

// liveWorker is the first worker that is running.
func (r *runner) liveWorker() (*testenv.Proc, error) {
	for _, w := range r.st.Workers {
		select {
		case <-w.Done():
		default:
			return w, nil
		}
	}
	return nil, errors.New("no worker is running")
}

// killWorker sends sig to a worker; for SIGTERM it waits for the worker to
// drain and exit, which must be clean.
func killWorker(sig syscall.Signal) func(context.Context, *runner) (string, error) {
	return func(ctx context.Context, r *runner) (string, error) {
		w, err := r.liveWorker()
		if err != nil {
			return "", err
		}
		note := fmt.Sprintf("%s pid %d", w.Name, w.Pid())
		if sig == syscall.SIGTERM {
			start := time.Now()
			if err := w.Stop(ctx); err != nil {
				return note, fmt.Errorf("SIGTERM: %w", err)
			}
			return fmt.Sprintf("%s drained and exited 0 in %s", note, time.Since(start).Round(time.Millisecond)), nil
		}
		if err := syscall.Kill(w.Pid(), sig); err != nil {
			return note, err
		}
		<-w.Done()
		return note, nil
	}
}

// replaceWorker starts a new worker for the one lost.
func replaceWorker(ctx context.Context, r *runner) error {
	w, err := r.st.AddWorker(ctx)
	if err != nil {
		return fmt.Errorf("replacement worker: %w", err)
	}
	logf("replacement %s pid %d ready", w.Name, w.Pid())
	return nil
}

// freezeWorker stops a worker with SIGSTOP until the broker has dropped one
// of the vhost's connections (the worker's: nothing else is silent), then
// continues it; the worker must get ready again by itself.
func freezeWorker(ctx context.Context, r *runner) (string, error) {
	w, err := r.liveWorker()
	if err != nil {
		return "", err
	}
	before, err := r.connections(ctx)
	if err != nil {
		return "", err
	}
	if err := syscall.Kill(w.Pid(), syscall.SIGSTOP); err != nil {
		return "", err
	}
	start := time.Now()
	var dropped bool
	for deadline := start.Add(6*heartbeat*time.Second + 10*time.Second); time.Now().Before(deadline) && ctx.Err() == nil; {
		if n, err := r.connections(ctx); err == nil && n < before {
			dropped = true
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	took := time.Since(start).Round(100 * time.Millisecond)
	if err := syscall.Kill(w.Pid(), syscall.SIGCONT); err != nil {
		return "", err
	}
	note := fmt.Sprintf("%s pid %d frozen %s", w.Name, w.Pid(), took)
	if !dropped {
		return note, fmt.Errorf("the broker did not drop the frozen worker's connection within %s (%d connections)", took, before)
	}
	if err := w.WaitReady(ctx); err != nil {
		return note, fmt.Errorf("the continued worker is not ready again: %w", err)
	}
	return note + ", dropped by the broker, ready again", nil
}

// memoryAlarm raises the broker's memory alarm for half a phase, then
// clears it.
func memoryAlarm(ctx context.Context, r *runner) (string, error) {
	if err := r.rabbit.Ctl(ctx, "set_vm_memory_high_watermark", "absolute", "10MB"); err != nil {
		return "", err
	}
	partnerload.Sleep(ctx, r.cfg.Phase/2)
	return fmt.Sprintf("held %s", r.cfg.Phase/2), r.rabbit.Ctl(ctx, "set_vm_memory_high_watermark", "0.4")
}

// connections counts the client connections to the stack's vhost.
func (r *runner) connections(ctx context.Context) (int, error) {
	on, err := r.rabbit.Connections(ctx, r.vhost)
	return on[r.rabbit.Port], err
}

// drain waits for the command queue to empty.
func (r *runner) drain(ctx context.Context) error {
	return partnerload.Drain(ctx, partnerload.DrainLimit, func(ctx context.Context) (int, error) {
		q, err := r.rabbit.Queue(ctx, r.vhost, amqpx.Queue)
		return q.Messages + q.Unacked, err
	})
}
