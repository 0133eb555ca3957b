// Package sysmon keeps the Go runtime's system monitor out of deep sleep in
// the long-running processes (gateway, worker, bench).
//
// The monitor is a runtime thread that takes processors back from goroutines
// blocked in system calls. When every processor of the process is idle it
// sleeps until woken; the next system call of any goroutine wakes it, and it
// then polls every 20 us (the timer slack makes it ~70 us) for at least 50
// rounds before backing off. A gateway or worker goes idle between requests
// many times a second, so under load its monitor is woken, polls and sleeps
// again thousands of times a second. On the benchmark machine
// (docs/BENCHMARKS.md, "The runtime's monitor") those wake-ups were 40% of
// the processes' context switches and about a tenth of their CPU.
//
// The runtime never lets the monitor deep-sleep while GODEBUG sets schedtrace,
// so that it can print the scheduler trace on time. Setting is a trace period
// of 2^31-1 ms (24.8 days): the monitor then backs off to one poll every 10 ms
// while nothing happens, and the trace is a line on stderr at most every 24.8
// days (and once at start on a host up longer than that). A crash also prints
// the scheduler's state before the goroutine dump.
package sysmon

import (
	"os"
	"strings"
	"syscall"
)

// Setting is the GODEBUG entry the processes run with.
const Setting = "schedtrace=2147483647"

const key = "GODEBUG="

// Env returns env with Setting added to GODEBUG, and whether it changed it.
// An environment whose GODEBUG already sets schedtrace, to any value (0 turns
// this off), is returned as it is.
func Env(env []string) ([]string, bool) {
	for i, kv := range env {
		if !strings.HasPrefix(kv, key) {
			continue
		}
		// The runtime reads the first GODEBUG of the environment.
		for _, s := range strings.Split(kv[len(key):], ",") {
			if strings.HasPrefix(s, "schedtrace=") {
				return env, false
			}
		}
		out := append([]string(nil), env...)
		if kv == key {
			out[i] = key + Setting
		} else {
			out[i] = kv + "," + Setting
		}
		return out, true
	}
	return append(append([]string(nil), env...), key+Setting), true
}

// Exec runs the process's binary again in its place, with the same arguments
// and process id and Setting added to GODEBUG, which the runtime reads only at
// start. It returns nil at once when GODEBUG already sets schedtrace; after a
// successful exec it does not return. Call it first thing in main.
func Exec() error {
	env, changed := Env(os.Environ())
	if !changed {
		return nil
	}
	exe := "/proc/self/exe" // the running binary even if its file was replaced
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return err
		}
	}
	return syscall.Exec(exe, os.Args, env)
}
