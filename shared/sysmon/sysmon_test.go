package sysmon

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

func TestEnv(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		env     []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"A=1"}, []string{"A=1", "GODEBUG=" + Setting}, true},
		{"empty GODEBUG", []string{"GODEBUG=", "A=1"}, []string{"GODEBUG=" + Setting, "A=1"}, true},
		{"other settings kept", []string{"GODEBUG=gctrace=1"}, []string{"GODEBUG=gctrace=1," + Setting}, true},
		{"turned off", []string{"GODEBUG=schedtrace=0"}, []string{"GODEBUG=schedtrace=0"}, false},
		{"own period", []string{"GODEBUG=gctrace=1,schedtrace=1000"}, []string{"GODEBUG=gctrace=1,schedtrace=1000"}, false},
		{"first GODEBUG counts", []string{"GODEBUG=x=1", "GODEBUG=schedtrace=0"},
			[]string{"GODEBUG=x=1," + Setting, "GODEBUG=schedtrace=0"}, true},
		{"a name that only ends in schedtrace", []string{"GODEBUG=noschedtrace=1"},
			[]string{"GODEBUG=noschedtrace=1," + Setting}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.env)
			got, changed := Env(in)
			if !slices.Equal(got, tt.want) || changed != tt.changed {
				t.Errorf("Env(%q) = %q, %v; want %q, %v", tt.env, got, changed, tt.want, tt.changed)
			}
			if !slices.Equal(in, tt.env) {
				t.Errorf("Env changed its argument to %q", in)
			}
		})
	}
}

// TestExecRestartsWithTheSetting runs this test binary as a child that calls
// Exec and prints the GODEBUG it ends up with, its process id and its
// arguments; the parent sees the child's own pid, so exec kept the process.
func TestExecRestartsWithTheSetting(t *testing.T) {
	if os.Getenv("SYSMON_CHILD") == "1" {
		if err := Exec(); err != nil {
			os.Stdout.WriteString("exec failed: " + err.Error() + "\n")
			os.Exit(3)
		}
		fmt.Printf("%s|%s|%d\n", os.Getenv("GODEBUG"), strings.Join(os.Args[1:], " "), os.Getpid())
		os.Exit(0)
	}
	for _, tc := range []struct{ godebug, want string }{
		{"", Setting},
		{"gctrace=0", "gctrace=0," + Setting},
		{"schedtrace=0", "schedtrace=0"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestExecRestartsWithTheSetting$")
		cmd.Env = append(os.Environ(), "SYSMON_CHILD=1")
		if tc.godebug != "" {
			cmd.Env = append(cmd.Env, "GODEBUG="+tc.godebug)
		}
		cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool {
			return strings.HasPrefix(kv, "GODEBUG=") && kv != "GODEBUG="+tc.godebug
		})
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("GODEBUG=%q: child: %v: %s", tc.godebug, err, out)
		}
		want := fmt.Sprintf("%s|-test.run=^TestExecRestartsWithTheSetting$|%d\n", tc.want, cmd.Process.Pid)
		if string(out) != want {
			t.Errorf("GODEBUG=%q: child printed %q, want %q", tc.godebug, out, want)
		}
	}
}
