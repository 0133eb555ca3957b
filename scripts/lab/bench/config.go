package bench

import (
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/oneoffice/provisioner/scripts/lab/load"
)

// config is the bench's command line.
type config struct {
	workers     int // worker processes
	concurrency int // WORKER_CONCURRENCY of each worker
	prefetch    int // WORKER_PREFETCH of each worker
	c           int // requests in flight in phases 1 and 2 (and 6)

	duration       time.Duration // phases 1 and 2
	rateDuration   time.Duration // each arrival rate of phase 3
	singleDuration time.Duration // the single callers of phases 1 and 4
	idemDuration   time.Duration // phase 6
	warmUp         time.Duration // unmeasured load before the first run
	maxInFlight    int           // bound of the open loop of phase 3
	runs           int           // repetitions of phases 1 to 5, 7 and 8
	mixDuration    time.Duration // each closed loop of the partner mix (phase 7); 0 skips the mix
	admission      int           // ADMISSION_MAX_IN_FLIGHT of the gateway; 0 turns admission control off

	jsonPath string // write the results there too
	storage  string // parent of STORAGE_ROOT; "" puts it in the work directory

	peer    bool   // run the asynq peer's phases after the stack's in each run
	peerDir string // the peer's module, relative to the repository's root

	stack load.StackFlags
}

// defaultAdmission is the gateway's ADMISSION_MAX_IN_FLIGHT in the lab's
// stacks: the workers' 2 x 32 commands running, and as many waiting.
const defaultAdmission = 128

// defaultPeerDir is where the asynq peer's module sits beside the repository.
const defaultPeerDir = "../shared/tools/asynqpeer"

func parseFlags(args []string) (config, error) {
	var c config
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	if err := c.stack.Register(fs); err != nil {
		return c, err
	}
	fs.IntVar(&c.workers, "workers", 2, "worker processes")
	fs.IntVar(&c.concurrency, "concurrency", 32, "WORKER_CONCURRENCY of each worker")
	fs.IntVar(&c.prefetch, "prefetch", 64, "WORKER_PREFETCH of each worker")
	fs.IntVar(&c.c, "c", 64, "requests in flight in the closed-loop phases")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "length of the ceiling and end-to-end phases")
	fs.DurationVar(&c.rateDuration, "rate-duration", 8*time.Second, "length of each fixed-rate phase")
	fs.DurationVar(&c.singleDuration, "single-duration", 5*time.Second, "length of the single-caller phases")
	fs.DurationVar(&c.idemDuration, "idem-duration", 5*time.Second, "length of the idempotency phase")
	fs.DurationVar(&c.warmUp, "warmup", 2*time.Second, "unmeasured load before the first run")
	fs.IntVar(&c.maxInFlight, "max-inflight", 512, "most requests in flight in the fixed-rate phases (more are shed and counted as errors)")
	fs.DurationVar(&c.mixDuration, "mix-duration", 10*time.Second, "length of each closed loop of the partner mix, and of its open loop (0: no mix)")
	fs.IntVar(&c.admission, "admission", defaultAdmission, "ADMISSION_MAX_IN_FLIGHT of the gateway (0: admission control off)")
	fs.IntVar(&c.runs, "runs", 1, "repeat phases 1 to 5, 7 and 8 this many times and report the medians")
	fs.BoolVar(&c.peer, "peer", true, "also measure the asynq peer (built from -peer-dir) after the stack's phases of each run")
	fs.StringVar(&c.peerDir, "peer-dir", defaultPeerDir, "the asynq peer's Go module, relative to the repository's root")
	fs.StringVar(&c.jsonPath, "json", "", "also write the results to this JSON file")
	fs.StringVar(&c.storage, "storage", "", "directory under which the tenants' storage root is made (default: the work directory, in the temp dir)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return c, c.validate()
}

func (c config) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("-%s must be at least 1", name))
		}
	}
	positive("workers", c.workers)
	positive("concurrency", c.concurrency)
	positive("prefetch", c.prefetch)
	positive("c", c.c)
	positive("max-inflight", c.maxInFlight)
	positive("runs", c.runs)
	for name, d := range map[string]time.Duration{"duration": c.duration, "rate-duration": c.rateDuration,
		"single-duration": c.singleDuration, "idem-duration": c.idemDuration} {
		if d <= 0 || d > 10*time.Minute {
			errs = append(errs, fmt.Errorf("-%s must be between 0 and 10m", name))
		}
	}
	if c.mixDuration < 0 || c.mixDuration > 10*time.Minute {
		errs = append(errs, errors.New("-mix-duration must be between 0 and 10m"))
	}
	if c.admission < 0 {
		errs = append(errs, errors.New("-admission must be 0 (off) or more"))
	}
	if c.warmUp < 0 || c.warmUp > time.Minute {
		errs = append(errs, errors.New("-warmup must be between 0 and 1m"))
	}
	return errors.Join(append(errs, c.stack.Validate())...)
}
