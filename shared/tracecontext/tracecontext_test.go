package tracecontext

import "testing"

func TestParse(t *testing.T) {
	const good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	for _, tt := range []struct {
		in string
		ok bool
	}{
		{good, true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"", false},
		{"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},       // another version
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},       // upper case
		{"00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},       // zero trace id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", false}, // too long
		{"00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},       // separator
		{"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01", false},       // not hex
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x", false},       // flags not hex
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7x01", false},       // separator
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-701", false},       // span too short
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 ", false},      // trailing space
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", false},        // short flags
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"[:54], false},  // cut
		{"00-4bf92f3577b34da6a3ce929d0e0e47364-00f067aa0ba902b-01", false},       // dash misplaced
	} {
		p, ok := Parse(tt.in)
		if ok != tt.ok {
			t.Errorf("Parse(%q) ok = %v, want %v", tt.in, ok, tt.ok)
		}
		if ok && p.String() != tt.in {
			t.Errorf("Parse(%q).String() = %q", tt.in, p.String())
		}
		want := ""
		if tt.ok {
			want = tt.in[3:35]
		}
		if TraceID(tt.in) != want {
			t.Errorf("TraceID(%q) = %q, want %q", tt.in, TraceID(tt.in), want)
		}
	}
}

func TestNewAndChild(t *testing.T) {
	p := New()
	if q, ok := Parse(p.String()); !ok || q != p || p.Flags != "01" {
		t.Fatalf("New() = %q: parsed %+v, %v; want itself, sampled", p, q, ok)
	}
	if New().TraceID == p.TraceID {
		t.Fatal("two new traces share an id")
	}
	c := p.Child()
	if c.TraceID != p.TraceID || c.Flags != p.Flags || c.SpanID == p.SpanID {
		t.Fatalf("Child of %q = %q: want the same trace and flags, a new span", p, c)
	}
	if _, ok := Parse(c.String()); !ok {
		t.Fatalf("Child() = %q does not parse", c)
	}
}
