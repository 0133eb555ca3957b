package runtimeenv

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	t.Parallel()
	server := Settings{OneProc: true}
	tests := []struct {
		name    string
		env     []string
		s       Settings
		want    []string
		changed bool
	}{
		{"empty", []string{"A=1"}, server, []string{"A=1", "GODEBUG=" + Monitor, "GOMAXPROCS=1"}, true},
		{"a tool keeps GOMAXPROCS", []string{"A=1"}, Settings{}, []string{"A=1", "GODEBUG=" + Monitor}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, Settings{}, []string{"GODEBUG=" + Monitor, "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=gctrace=1"}, Settings{}, []string{"GODEBUG=gctrace=1," + Monitor}, true},
		{"monitor turned off", []string{"GODEBUG=schedtrace=0"}, server, []string{"GODEBUG=schedtrace=0", "GOMAXPROCS=1"}, true},
		{"both set already", []string{"GODEBUG=gctrace=1,schedtrace=1000", "GOMAXPROCS=4"}, server,
			[]string{"GODEBUG=gctrace=1,schedtrace=1000", "GOMAXPROCS=4"}, false},
		{"first GODEBUG counts", []string{"GODEBUG=x=1", "GODEBUG=schedtrace=0"}, Settings{},
			[]string{"GODEBUG=x=1," + Monitor, "GODEBUG=schedtrace=0"}, true},
		{"a name that only ends in schedtrace", []string{"GODEBUG=noschedtrace=1"}, Settings{},
			[]string{"GODEBUG=noschedtrace=1," + Monitor}, true},
		{"a variable that only starts like one", []string{"GODEBUGX=1", "GOMAXPROCSX=2"}, server,
			[]string{"GODEBUGX=1", "GOMAXPROCSX=2", "GODEBUG=" + Monitor, "GOMAXPROCS=1"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.env)
			got, changed := Env(in, tt.s)
			if !slices.Equal(got, tt.want) || changed != tt.changed {
				t.Errorf("Env(%q) = %q, %v; want %q, %v", tt.env, got, changed, tt.want, tt.changed)
			}
			if !slices.Equal(in, tt.env) {
				t.Errorf("Env changed its argument to %q", in)
			}
		})
	}
}

// TestExecRestartsWithTheSettings runs this test binary as a child that calls
// Exec and prints the GODEBUG and GOMAXPROCS the runtime ended up with, its
// arguments, its process id and its name: the parent sees the pid it started
// and its own binary's name, so exec kept the process and what names it.
func TestExecRestartsWithTheSettings(t *testing.T) {
	if os.Getenv("RUNTIMEENV_CHILD") == "1" {
		if err := Exec(Settings{OneProc: true}); err != nil {
			fmt.Println("exec failed:", err)
			os.Exit(3)
		}
		comm, _ := os.ReadFile("/proc/self/comm")
		fmt.Printf("%s|%d|%s|%d|%s", os.Getenv("GODEBUG"), runtime.GOMAXPROCS(0), strings.Join(os.Args[1:], " "), os.Getpid(), comm)
		os.Exit(0)
	}
	// The restarted process keeps the name of its binary (what pgrep finds).
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env   []string
		debug string
		procs int
	}{
		{nil, Monitor, 1},
		{[]string{"GODEBUG=gctrace=0", "GOMAXPROCS=2"}, "gctrace=0," + Monitor, 2},
		{[]string{"GODEBUG=schedtrace=0"}, "schedtrace=0", 1},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExecRestartsWithTheSettings$")
		cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool {
			return strings.HasPrefix(kv, "GODEBUG=") || strings.HasPrefix(kv, "GOMAXPROCS=")
		})
		cmd.Env = append(append(cmd.Env, "RUNTIMEENV_CHILD=1"), tc.env...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("env %q: child: %v: %s", tc.env, err, out)
		}
		want := fmt.Sprintf("%s|%d|-test.run=^TestExecRestartsWithTheSettings$|%d|%s", tc.debug, tc.procs, cmd.Process.Pid, comm)
		if string(out) != want {
			t.Errorf("env %q: child printed %q, want %q", tc.env, out, want)
		}
	}
}
