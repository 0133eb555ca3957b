package main

import (
	"bytes"
	"strings"
	"testing"
)

// A call the table does not understand exits 2 with the usage text, which
// names every command, and prints nothing on stdout. None of these reaches
// a service.
func TestMisusePrintsTheUsage(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"keys"}, {"dlq"}, {"dlq", "list", "0"}, {"dlq", "replay", "x"},
		{"dlq", "list", "1", "2"}, {"dlq", "purge"}} {
		var stdout, stderr bytes.Buffer
		if code := run(args, strings.NewReader(""), &stdout, &stderr); code != 2 || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stdout %q; want 2 and nothing", args, code, stdout.String())
		}
		if want := "gateway " + args[0] + ": bad arguments\nusage:\n"; !strings.HasPrefix(stderr.String(), want) {
			t.Errorf("%q: stderr %q, want it to start %q", args, stderr.String(), want)
		}
		for _, c := range commands {
			if !strings.Contains(stderr.String(), "gateway "+c.name+" ") {
				t.Errorf("%q: the usage text does not name %q:\n%s", args, c.name, stderr.String())
			}
		}
	}
}
