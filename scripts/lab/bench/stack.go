package bench

import (
	"context"
	"strconv"

	"github.com/oneoffice/provisioner/shared/testenv"
)

// teardownLimit bounds the stack's close: the processes drain for up to
// testenv.DefaultStopTimeout each, then the rest is removed.
const teardownLimit = testenv.DefaultCloseTimeout

// stack is one isolated deployment on the shared servers, made with the
// harness of the e2e tests (testenv.UpStack): its own database, vhost and
// claimed Redis DB, binaries built from this tree, one gateway and
// cfg.workers workers on free loopback ports, each logging to <name>.log in
// the work directory. peerPids are the asynq peer's processes while they run
// (peer.go), classed apart in the CPU snapshots.
type stack struct {
	*testenv.Stack
	peerPids []int
}

// upStack brings the stack up; when it fails half way, what it made is
// removed again.
func upStack(ctx context.Context, cfg config) (*stack, error) {
	st, err := cfg.stack.Up(ctx, testenv.StackConfig{
		Name:    "bench",
		Workers: cfg.workers,
		Env: []string{"WORKER_CONCURRENCY=" + strconv.Itoa(cfg.concurrency),
			"WORKER_PREFETCH=" + strconv.Itoa(cfg.prefetch), "ADMISSION_MAX_IN_FLIGHT=" + strconv.Itoa(cfg.admission)},
		StorageDir:   cfg.storage,
		CloseTimeout: teardownLimit,
	}, progress)
	if err != nil {
		return nil, err
	}
	return &stack{Stack: st}, nil
}
