package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"regexp"
	"testing"

	"go.opentelemetry.io/otel/trace"
)

// timeField is the one field two lines written a moment apart differ in.
var timeField = regexp.MustCompile(`"time":"[^"]*"`)

// TestAttrsWritesWhatLogAttrsWrites: the per-call lines keep their fields,
// order and encoding, trace ids included, and honour the level.
func TestAttrsWritesWhatLogAttrsWrites(t *testing.T) {
	t.Parallel()
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{2}})
	ctx := trace.ContextWithSpanContext(context.Background(), sc)
	attrs := []slog.Attr{slog.String("request_id", "r-1"), slog.Int64("partner", 7), slog.String("method", "createCustomer"),
		slog.Int("status", 200), slog.Float64("duration_ms", 1.234), slog.Bool("redelivered", false),
		slog.Any("error", errors.New("boom")), slog.String("idempotency", "new")}
	var want, got bytes.Buffer
	New(&want, slog.LevelInfo, "gateway").LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
	Attrs(ctx, New(&got, slog.LevelInfo, "gateway"), slog.LevelInfo, "request", attrs...)
	w, g := timeField.ReplaceAllString(want.String(), ""), timeField.ReplaceAllString(got.String(), "")
	if w != g {
		t.Fatalf("Attrs wrote\n%s\nLogAttrs writes\n%s", g, w)
	}
	var quiet bytes.Buffer
	Attrs(ctx, New(&quiet, slog.LevelWarn, "worker"), slog.LevelInfo, "command", attrs...)
	if quiet.Len() != 0 {
		t.Fatalf("a line below the level was written: %s", quiet.String())
	}
}

func BenchmarkRequestLine(b *testing.B) {
	var out bytes.Buffer
	l := New(&out, slog.LevelInfo, "gateway")
	ctx := context.Background()
	b.Run("InfoContext", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			l.InfoContext(ctx, "request", "request_id", "0b6a2f4e-2d1c-4f8e-9a57-3c1d2e4f5a6b", "partner", int64(7),
				"method", "createCustomer", "status", 200, "duration_ms", 3.456, "idempotency", "new")
		}
	})
	b.Run("Attrs", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			out.Reset()
			Attrs(ctx, l, slog.LevelInfo, "request", slog.String("request_id", "0b6a2f4e-2d1c-4f8e-9a57-3c1d2e4f5a6b"),
				slog.Int64("partner", 7), slog.String("method", "createCustomer"), slog.Int("status", 200),
				slog.Float64("duration_ms", 3.456), slog.String("idempotency", "new"))
		}
	})
}
