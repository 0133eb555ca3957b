// Package runtimeenv gives the long-running processes (gateway, worker,
// bench) the Go runtime environment they were measured with
// (docs/BENCHMARKS.md, "The runtime's monitor" and "One processor"):
//
//   - GODEBUG=schedtrace=2147483647 keeps the runtime's monitor out of deep
//     sleep. The monitor is a runtime thread that takes processors back from
//     goroutines blocked in system calls. When every processor of the process
//     is idle it sleeps until woken; the next system call of any goroutine
//     wakes it, and it then polls every 20 us (the timer slack makes it ~70 us)
//     for at least 50 rounds before backing off. A gateway or worker goes idle
//     between requests many times a second, so under load its monitor was
//     woken, polled and slept again thousands of times a second: 40% of the
//     processes' context switches on the benchmark machine. The runtime never
//     lets the monitor deep-sleep while schedtrace is set, so that it can print
//     the scheduler trace on time; with a period of 2^31-1 ms (24.8 days) the
//     monitor backs off to one poll every 10 ms while nothing happens, and the
//     trace is a line on stderr at most every 24.8 days (and once at start on a
//     host up longer than that). A crash also prints the scheduler's state
//     before the goroutine dump.
//   - GOMAXPROCS=1, for the gateway and the worker only. Each of them spends a
//     fraction of a core, waiting on the network; with a second processor every
//     goroutine woken by a reply wakes a second thread to run it. One processor
//     runs it on the thread that woke it. Processes scale by running more of
//     them (SPEC section 9); GOMAXPROCS=N in the environment gives one process
//     N cores.
//
// The runtime reads both only at start, so Exec runs the binary again in its
// own place with them added. A setting the environment already has (to any
// value) is left as it is: GODEBUG=schedtrace=0 turns the first one off.
package runtimeenv

import (
	"os"
	"strings"
	"syscall"
)

// Monitor is the GODEBUG entry that keeps the monitor out of deep sleep.
const Monitor = "schedtrace=2147483647"

// Settings say which of the package's settings a process takes: every process
// takes Monitor.
type Settings struct {
	OneProc bool // GOMAXPROCS=1 (the gateway and the worker)
}

// Env returns env with the settings it lacks added, and whether it changed
// it. env itself is not modified.
func Env(env []string, s Settings) ([]string, bool) {
	out := append([]string(nil), env...)
	changed := addGoDebug(&out)
	if s.OneProc && index(out, "GOMAXPROCS") < 0 {
		out, changed = append(out, "GOMAXPROCS=1"), true
	}
	return out, changed
}

// addGoDebug adds Monitor to the first GODEBUG of env (the one the runtime
// reads) unless it sets schedtrace.
func addGoDebug(env *[]string) bool {
	i := index(*env, "GODEBUG")
	if i < 0 {
		*env = append(*env, "GODEBUG="+Monitor)
		return true
	}
	v := (*env)[i][len("GODEBUG="):]
	for _, s := range strings.Split(v, ",") {
		if strings.HasPrefix(s, "schedtrace=") {
			return false
		}
	}
	if v != "" {
		v += ","
	}
	(*env)[i] = "GODEBUG=" + v + Monitor
	return true
}

// index returns the position of the first entry of env named name, or -1.
func index(env []string, name string) int {
	for i, kv := range env {
		if strings.HasPrefix(kv, name+"=") {
			return i
		}
	}
	return -1
}

// Exec runs the process's binary again in its place, with the same arguments
// and process id and the settings of s its environment lacks. It returns nil
// at once when nothing is missing; after a successful exec it does not
// return. Call it first thing in main.
func Exec(s Settings) error {
	env, changed := Env(os.Environ(), s)
	if !changed {
		return nil
	}
	// The binary's own path, not /proc/self/exe: the kernel names the process
	// after the file it runs, and operators find it by that name (pgrep worker).
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, env)
}
