package bench

import (
	"context"
	"strconv"
	"syscall"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// teardownLimit bounds the stack's close: the processes drain for up to
// testenv.DefaultStopTimeout each, then the rest is removed.
const teardownLimit = testenv.DefaultCloseTimeout

// stack is one isolated deployment on the shared servers, made with the
// harness of the e2e tests (testenv.UpStack): its own database, vhost and
// claimed Redis DB, binaries built from this tree, one gateway and
// cfg.workers workers on free loopback ports, each logging to <name>.log in
// the work directory.
type stack struct{ *testenv.Stack }

// upStack brings the stack up; when it fails half way, what it made is
// removed again.
func upStack(ctx context.Context, cfg config) (*stack, error) {
	srv := cfg.servers
	srv.Logf = progress
	st, err := srv.UpStack(ctx, testenv.StackConfig{
		Name:       "bench",
		Workers:    cfg.workers,
		Env:        env(cfg),
		RedisDB:    cfg.redisDB,
		Keep:       cfg.keep,
		StorageDir: cfg.storage,
		LogFiles:   true,
		// Own process group: a Ctrl-C on the terminal reaches the bench only.
		// The parent-death signal stops the process should the bench be
		// killed outright.
		SysProcAttr:  &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM},
		CloseTimeout: teardownLimit,
	})
	if err != nil {
		return nil, err
	}
	return &stack{st}, nil
}

// env is what every process of the stack gets on top of the bench's own and
// the stack's addresses.
func env(cfg config) []string {
	env := []string{
		"WORKER_CONCURRENCY=" + strconv.Itoa(cfg.concurrency),
		"WORKER_PREFETCH=" + strconv.Itoa(cfg.prefetch),
		"RATE_LIMIT_RPS=0",
		// The per-request log line is part of the real cost: keep it.
		"LOG_LEVEL=info",
	}
	if cfg.gomaxprocs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(cfg.gomaxprocs))
	}
	return env
}
