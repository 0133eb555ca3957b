package testenv

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ClockTick is the unit of the CPU times in /proc: sysconf(_SC_CLK_TCK) is
// 100 on every Linux architecture Go supports.
const ClockTick = 10 * time.Millisecond

// SelfCPU is the processor time this process has used.
func SelfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ProcCPU returns the command name and utime+stime (all threads, in
// ClockTicks) of /proc/<pid>/stat.
func ProcCPU(pid int) (string, uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, err
	}
	// The command name may hold spaces and parentheses: it runs from the first
	// '(' to the last ')', and the numbered fields follow.
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return "", 0, fmt.Errorf("/proc/%d/stat: malformed", pid)
	}
	f := strings.Fields(string(b[end+1:]))
	// f[0] is field 3 (state): utime is field 14, stime field 15.
	if len(f) < 13 {
		return "", 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseUint(f[11], 10, 64)
	stime, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return "", 0, fmt.Errorf("/proc/%d/stat: malformed times", pid)
	}
	return string(b[open+1 : end]), utime + stime, nil
}

// MachineCPU reads the "cpu" line of /proc/stat: all time, idle time (idle
// + iowait), in ClockTicks, and the number of cores.
func MachineCPU() (all, idle uint64, cores int, err error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) > 8 && f[0] == "cpu":
			// user nice system idle iowait irq softirq steal; guest time is
			// already inside user.
			for i, v := range f[1:9] {
				n, _ := strconv.ParseUint(v, 10, 64)
				all += n
				if i == 3 || i == 4 {
					idle += n
				}
			}
		case len(f) > 0 && strings.HasPrefix(f[0], "cpu"):
			cores++
		}
	}
	return all, idle, cores, nil
}
