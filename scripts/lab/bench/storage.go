package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// mkdirSamples is how many directories the calibration creates.
const mkdirSamples = 500

// mkdirCost measures what one tenant directory costs the file system under
// root right now: the CPU (user+system) of one thread creating mkdirSamples
// empty directories side by side, as createCustomer does. On ext4 in a VM it
// ranges from ~20 to ~150 us and drifts as the file system ages within minutes,
// which moves the workers' CPU per request by as much; printing it with each
// run tells that drift from a change in our code.
func mkdirCost(root string) (time.Duration, error) {
	dir, err := os.MkdirTemp(root, "mkdir-calibration-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before, err := threadCPU()
	if err != nil {
		return 0, err
	}
	for i := range mkdirSamples {
		if err := os.Mkdir(filepath.Join(dir, fmt.Sprintf("c-calibration-%d", i)), 0o750); err != nil {
			return 0, err
		}
	}
	after, err := threadCPU()
	if err != nil {
		return 0, err
	}
	return (after - before) / mkdirSamples, nil
}

func threadCPU() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0, err
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
