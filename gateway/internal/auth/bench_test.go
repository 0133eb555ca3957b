package auth

import (
	"context"
	"testing"
)

// BenchmarkCacheHit is the cost of a known key on every call: recording
// the key's last use adds nothing here (Find writes it, at most once a
// minute, when the cache reads the key again).
func BenchmarkCacheHit(b *testing.B) {
	c := NewCacheWith(func(context.Context, [32]byte) (int64, error) { return 7, nil }, Options{})
	ctx := context.Background()
	if p, _ := c.Partner(ctx, "oo_bench", nil); p != 7 {
		b.Fatal("no partner")
	}
	b.ReportAllocs()
	for b.Loop() {
		c.Partner(ctx, "oo_bench", nil)
	}
}
