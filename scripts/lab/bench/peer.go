package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// peerKey is the x-api-key sent to the peer, which accepts any.
const peerKey = "bench"

// peer is the asynq peer of the side-by-side comparison (its README): an HTTP
// front that takes the same Redis lock, enqueues an asynq task and waits for
// the worker's reply. It is its own module outside this repository, built
// into bin/asynqpeer, and runs on a database and a claimed Redis DB of its
// own. Its processes run only during its phases of each run, so that their
// pollers do not load the machine while the provisioner is measured.
type peer struct {
	bin, dbURL, redisURL string
	env                  []string // what the stack's processes get too
	logDir               string
	undo                 testenv.Teardown
}

// upPeer builds the peer, makes its database and Redis DB and migrates it.
// When it fails half way, what it made is removed again.
func upPeer(ctx context.Context, cfg config, logDir string) (_ *peer, err error) {
	p := &peer{logDir: logDir, env: []string{"GOMAXPROCS=" + cfg.stack.Procs()}}
	defer func() {
		if err != nil {
			err = errors.Join(err, p.close())
		}
	}()
	srv := cfg.stack.Servers
	srv.Logf = progress
	progress("peer: build %s", cfg.peerDir)
	if p.bin, err = buildPeer(ctx, cfg.peerDir); err != nil {
		return nil, fmt.Errorf("peer: build: %w", err)
	}
	name := testenv.Name("bench_peer")
	url, drop, err := srv.CreateDatabase(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("peer: database: %w", err)
	}
	p.undo.Add("drop database "+name, drop)
	r, err := srv.ClaimRedis(ctx, "bench peer "+name, 0)
	if err != nil {
		return nil, fmt.Errorf("peer: redis: %w", err)
	}
	p.undo.Add(fmt.Sprintf("release Redis DB %d", r.DB), r.Release)
	p.dbURL, p.redisURL = url, r.URL
	progress("peer: database %s, Redis DB %d", name, r.DB)
	if _, err := testenv.Run(ctx, p.bin, p.envWith(""), "migrate"); err != nil {
		return nil, fmt.Errorf("peer: migrate: %w", err)
	}
	return p, nil
}

// buildPeer compiles the peer's module in dir, relative to the repository's
// root, into the repository's bin/.
func buildPeer(ctx context.Context, dir string) (string, error) {
	root, err := testenv.ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(root, dir)
	}
	bin := filepath.Join(root, "bin", "asynqpeer")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w: %s", err, strings.TrimSpace(string(out)))
	}
	return bin, nil
}

func (p *peer) envWith(httpAddr string) []string {
	env := append([]string{"DATABASE_URL=" + p.dbURL, "REDIS_URL=" + p.redisURL}, p.env...)
	if httpAddr != "" {
		env = append(env, "HTTP_ADDR="+httpAddr)
	}
	return env
}

// close removes the Redis DB and the database.
func (p *peer) close() error { return p.undo.Run(teardownLimit) }

// peerProcs are one run's peer processes: a front and the workers.
type peerProcs struct {
	url   string
	procs []*testenv.Proc
}

// start runs the workers and the front, the processes the stack runs (with
// the same GOMAXPROCS and GODEBUG), and waits until the front answers.
func (p *peer) start(ctx context.Context, workers int) (_ *peerProcs, err error) {
	pp := &peerProcs{}
	defer func() {
		if err != nil {
			err = errors.Join(err, pp.stop())
		}
	}()
	addr, err := testenv.PickAddr()
	if err != nil {
		return nil, err
	}
	pp.url = "http://" + addr + "/"
	for i := workers; i >= 0; i-- { // the workers first, as the stack starts them
		name, arg := fmt.Sprintf("peer-work-%d", i), "work"
		if i == 0 {
			name, arg = "peer-serve", "serve"
		}
		proc, err := testenv.LaunchProc(testenv.ProcConfig{Path: p.bin, Name: name, Args: []string{arg},
			Env: p.envWith(addr), LogFile: filepath.Join(p.logDir, name+".log"), StopTimeout: 5 * time.Second,
			SysProcAttr: &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}})
		if err != nil {
			return nil, err
		}
		pp.procs = append(pp.procs, proc)
	}
	return pp, pp.waitFront(ctx)
}

// waitFront waits until the front answers a call without key with 401.
func (pp *peerProcs) waitFront(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(testenv.DefaultReadyTimeout); time.Now().Before(deadline); {
		for _, proc := range pp.procs {
			if proc.Exited() {
				return fmt.Errorf("%s exited at start:\n%s", proc.Name, proc.Log())
			}
		}
		if resp, err := client.Get(pp.url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("peer front on %s did not answer within %s", pp.url, testenv.DefaultReadyTimeout)
}

// pids are the peer's process ids, for the CPU snapshots.
func (pp *peerProcs) pids() []int {
	var out []int
	for _, proc := range pp.procs {
		out = append(out, proc.Pid())
	}
	return out
}

// stop stops the processes, the front first. The peer does not exit 0 on
// SIGTERM (the front has no handler, a worker's log.Fatal exits 1 after its
// drain): only a process that had to be killed is an error.
func (pp *peerProcs) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), teardownLimit)
	defer cancel()
	var errs []error
	for i := len(pp.procs) - 1; i >= 0; i-- {
		proc := pp.procs[i]
		err := proc.Stop(ctx)
		if err != nil && proc.Exited() {
			if ws, ok := proc.Cmd().ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signal() != syscall.SIGKILL {
				err = nil
			}
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// phases are the peer's phases of one run: createCustomer at -c in flight,
// at 50% of that peak, and one caller, as phases 2 to 4 measure the stack.
func (p *peer) phases(ctx context.Context, st *stack, cfg config) (_ []Row, err error) {
	progress("peer: start a front and %d workers", cfg.workers)
	pp, err := p.start(ctx, cfg.workers)
	if err != nil {
		return nil, fmt.Errorf("peer: %w", err)
	}
	st.peerPids = pp.pids()
	defer func() {
		st.peerPids = nil
		if serr := pp.stop(); serr != nil {
			err = errors.Join(err, fmt.Errorf("peer: stop: %w", serr))
		}
	}()
	api := newAPIClient(pp.url, peerKey, cfg)
	defer api.close()
	if err := warmUp(ctx, api, cfg); err != nil {
		return nil, fmt.Errorf("peer: warm-up: %w", err)
	}
	progress("peer: createCustomer, %d in flight for %s", cfg.c, cfg.duration)
	e2e := st.measurePeerCPU(func() Row {
		return closedLoop(ctx, keyPeerE2E, fmt.Sprintf("peer c=%d", cfg.c), api.createCustomer, cfg.c, cfg.duration)
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e2e.OK == 0 {
		return nil, fmt.Errorf("peer: no createCustomer succeeded at %d in flight (errors %v)", cfg.c, e2e.ErrorsBy)
	}
	progress("peer: 50%% of %.0f/s for %s", e2e.Rate, cfg.rateDuration)
	rate := st.measurePeerCPU(func() Row {
		return openLoop(ctx, keyPeerRate50, "peer rate 50%", api.createCustomer, e2e.Rate*0.5, cfg.rateDuration, cfg.maxInFlight)
	})
	progress("peer: a single caller for %s", cfg.singleDuration)
	single := st.measurePeerCPU(func() Row {
		return closedLoop(ctx, keyPeerSingle, "peer 1 in flight", api.createCustomer, 1, cfg.singleDuration)
	})
	return []Row{e2e, rate, single}, ctx.Err()
}
