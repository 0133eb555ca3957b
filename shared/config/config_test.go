package config

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestDefaults(t *testing.T) {
	c, err := Load(env(nil), DefaultWorkerMetrics)
	if err != nil {
		t.Fatal(err)
	}
	if c.RPCTimeout != 4*time.Second || c.RenewalWindowDays != 15 || c.IdempotencyTTL != 24*time.Hour ||
		c.HTTPAddr != "127.0.0.1:8080" || c.MetricsAddr != DefaultWorkerMetrics || c.RateLimitRPS != 0 ||
		c.GoMaxProcs != 1 {
		t.Fatalf("defaults %+v", c)
	}
}

func TestInvalidValuesAreRefused(t *testing.T) {
	_, err := Load(env(map[string]string{
		"RPC_TIMEOUT": "soon", "WORKER_CONCURRENCY": "0", "RATE_LIMIT_RPS": "-1",
		"AMQP_URL": "http://x", "LOG_LEVEL": "loud", "GOMAXPROCS": "0",
	}), DefaultGatewayMetrics)
	if err == nil {
		t.Fatal("invalid config accepted")
	}
	for _, name := range []string{"RPC_TIMEOUT", "WORKER_CONCURRENCY", "RATE_LIMIT_RPS", "AMQP_URL", "LOG_LEVEL", "GOMAXPROCS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s: %v", name, err)
		}
	}
}

func TestMaskHidesPasswords(t *testing.T) {
	if got := Mask("amqp://guest:secret@127.0.0.1:5672/v"); strings.Contains(got, "secret") {
		t.Fatalf("Mask = %s", got)
	}
}

func TestGoMaxProcsFromTheEnvironment(t *testing.T) {
	c, err := Load(env(map[string]string{"GOMAXPROCS": "3"}), DefaultWorkerMetrics)
	if err != nil || c.GoMaxProcs != 3 {
		t.Fatalf("GOMAXPROCS=3: %d, %v", c.GoMaxProcs, err)
	}
}

func TestPreAuthSettings(t *testing.T) {
	c, err := Load(env(nil), DefaultGatewayMetrics)
	if err != nil || c.ClientRateLimitRPS != 0 || c.AuthLookupConcurrency != 4 || c.AuthLookupTimeout != 750*time.Millisecond {
		t.Fatalf("defaults: client limit %v, lookups %d, timeout %v, %v; want 0 (off), 4, 750ms",
			c.ClientRateLimitRPS, c.AuthLookupConcurrency, c.AuthLookupTimeout, err)
	}
	c, err = Load(env(map[string]string{
		"CLIENT_RATE_LIMIT_RPS": "2.5", "AUTH_LOOKUP_CONCURRENCY": "8", "AUTH_LOOKUP_TIMEOUT": "250ms",
	}), DefaultGatewayMetrics)
	if err != nil || c.ClientRateLimitRPS != 2.5 || c.AuthLookupConcurrency != 8 || c.AuthLookupTimeout != 250*time.Millisecond {
		t.Fatalf("set: client limit %v, lookups %d, timeout %v, %v", c.ClientRateLimitRPS, c.AuthLookupConcurrency, c.AuthLookupTimeout, err)
	}
	bad := map[string]string{"CLIENT_RATE_LIMIT_RPS": "-1", "AUTH_LOOKUP_CONCURRENCY": "0", "AUTH_LOOKUP_TIMEOUT": "0s"}
	_, err = Load(env(bad), DefaultGatewayMetrics)
	for name := range bad {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: error %v, want one naming it", name, bad[name], err)
		}
	}
}

func TestStorageRootIsMadeAbsolute(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ set, want string }{
		{"", filepath.Join(wd, DefaultStorageRoot)},
		{"data/../tenants", filepath.Join(wd, "tenants")},
		{"/srv/tenants/", "/srv/tenants"},
	} {
		c, err := Load(env(map[string]string{"STORAGE_ROOT": tc.set}), DefaultWorkerMetrics)
		if err != nil || c.StorageRoot != tc.want {
			t.Errorf("STORAGE_ROOT=%q: %q, %v; want %q", tc.set, c.StorageRoot, err, tc.want)
		}
	}
}

func TestStorageOrphanGrace(t *testing.T) {
	c, err := Load(env(nil), DefaultWorkerMetrics)
	if err != nil || c.StorageOrphanGrace != time.Hour {
		t.Fatalf("default STORAGE_ORPHAN_GRACE: %v, %v; want 1h", c.StorageOrphanGrace, err)
	}
	c, err = Load(env(map[string]string{"STORAGE_ORPHAN_GRACE": "10m"}), DefaultWorkerMetrics)
	if err != nil || c.StorageOrphanGrace != 10*time.Minute {
		t.Fatalf("STORAGE_ORPHAN_GRACE=10m: %v, %v", c.StorageOrphanGrace, err)
	}
	if _, err := Load(env(map[string]string{"STORAGE_ORPHAN_GRACE": "0s"}), DefaultWorkerMetrics); err == nil ||
		!strings.Contains(err.Error(), "STORAGE_ORPHAN_GRACE") {
		t.Fatalf("STORAGE_ORPHAN_GRACE=0s: %v, want a refusal naming it", err)
	}
}

func TestWebhookSettings(t *testing.T) {
	c, err := Load(env(nil), DefaultWorkerMetrics)
	w := c.Webhook
	if err != nil || w.SecretKey != "" || w.Timeout != 5*time.Second || w.RetryFor != 72*time.Hour ||
		w.RetryMin != 5*time.Second || w.RetryMax != time.Hour || w.Concurrency != 16 || w.EndpointConcurrency != 4 {
		t.Fatalf("defaults %+v, %v", w, err)
	}
	key := "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=" // 32 bytes
	c, err = Load(env(map[string]string{"WEBHOOK_SECRET_KEY": key, "WEBHOOK_ALLOW_HOSTS": "127.0.0.1, receiver.test"}),
		DefaultWorkerMetrics)
	if err != nil || c.Webhook.SecretKey != key || len(c.Webhook.AllowHosts) != 2 || c.Webhook.AllowHosts[1] != "receiver.test" {
		t.Fatalf("set: %+v, %v", c.Webhook, err)
	}
	if printed := fmt.Sprint(c.LogValue()); strings.Contains(printed, key) || !strings.Contains(printed, "secret_key=xxxxx") {
		t.Fatalf("printed configuration shows the key or hides that it is set: %s", printed)
	}
	bad := map[string]string{"WEBHOOK_SECRET_KEY": "c2hvcnQ=", "WEBHOOK_ALLOW_HOSTS": "http://x", "WEBHOOK_TIMEOUT": "2m",
		"WEBHOOK_RETRY_MIN": "2h", "WEBHOOK_CONCURRENCY": "-1", "WEBHOOK_RETRY_FOR": "0s"}
	_, err = Load(env(bad), DefaultWorkerMetrics)
	for name := range bad {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: error %v, want one naming it", name, bad[name], err)
		}
	}
	if err != nil && strings.Contains(err.Error(), "c2hvcnQ") {
		t.Errorf("the error shows the key: %v", err)
	}
}

// READ_DATABASE_URL defaults to DATABASE_URL, is checked when set, and is
// printed masked.
func TestReadDatabaseURL(t *testing.T) {
	c, err := Load(env(map[string]string{"DATABASE_URL": "postgres://app:pw@primary/oo"}), DefaultGatewayMetrics)
	if err != nil || c.ReadDatabaseURL != c.DatabaseURL {
		t.Fatalf("default: %q, %v", c.ReadDatabaseURL, err)
	}
	c, err = Load(env(map[string]string{"READ_DATABASE_URL": "postgres://app:s3cret@replica/oo"}), DefaultGatewayMetrics)
	if err != nil || c.ReadDatabaseURL != "postgres://app:s3cret@replica/oo" || c.DatabaseURL != DefaultDatabaseURL {
		t.Fatalf("set: %+v, %v", c, err)
	}
	if printed := fmt.Sprint(c.LogValue()); !strings.Contains(printed, "replica") || strings.Contains(printed, "s3cret") {
		t.Errorf("printed %s", printed)
	}
	if _, err := Load(env(map[string]string{"READ_DATABASE_URL": "mysql://replica/oo"}), DefaultGatewayMetrics); err == nil ||
		!strings.Contains(err.Error(), "READ_DATABASE_URL") {
		t.Errorf("a mysql URL: %v", err)
	}
}

func TestLinkTimeouts(t *testing.T) {
	c, err := Load(env(nil), DefaultWorkerMetrics)
	if err != nil || c.DialTimeout != 3*time.Second || c.TCPUserTimeout != 5*time.Second || c.AMQPHeartbeat != 5*time.Second {
		t.Fatalf("defaults: dial %v, user %v, heartbeat %v, %v; want 3s, 5s, 5s", c.DialTimeout, c.TCPUserTimeout, c.AMQPHeartbeat, err)
	}
	c, err = Load(env(map[string]string{"DIAL_TIMEOUT": "10s", "TCP_USER_TIMEOUT": "30s", "AMQP_HEARTBEAT": "15s"}), DefaultWorkerMetrics)
	if err != nil || c.DialTimeout != 10*time.Second || c.TCPUserTimeout != 30*time.Second || c.AMQPHeartbeat != 15*time.Second {
		t.Fatalf("set: dial %v, user %v, heartbeat %v, %v", c.DialTimeout, c.TCPUserTimeout, c.AMQPHeartbeat, err)
	}
	bad := map[string]string{"DIAL_TIMEOUT": "0s", "TCP_USER_TIMEOUT": "-1s", "AMQP_HEARTBEAT": "often"}
	_, err = Load(env(bad), DefaultWorkerMetrics)
	for name := range bad {
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: error %v, want one naming it", name, bad[name], err)
		}
	}
}

// IDEMPOTENCY_ACQUIRE_TIMEOUT bounds a key's take in Redis: 750ms unless set.
func TestIdemAcquireTimeout(t *testing.T) {
	c, err := Load(env(nil), DefaultGatewayMetrics)
	if err != nil || c.IdemAcquireTimeout != 750*time.Millisecond {
		t.Fatalf("default: %v, %v; want 750ms", c.IdemAcquireTimeout, err)
	}
	c, err = Load(env(map[string]string{"IDEMPOTENCY_ACQUIRE_TIMEOUT": "2s"}), DefaultGatewayMetrics)
	if err != nil || c.IdemAcquireTimeout != 2*time.Second {
		t.Fatalf("set: %v, %v; want 2s", c.IdemAcquireTimeout, err)
	}
	if _, err := Load(env(map[string]string{"IDEMPOTENCY_ACQUIRE_TIMEOUT": "0s"}), DefaultGatewayMetrics); err == nil ||
		!strings.Contains(err.Error(), "IDEMPOTENCY_ACQUIRE_TIMEOUT") {
		t.Errorf("0s: %v, want an error naming it", err)
	}
}

// READ_TIMEOUT bounds a read's wait for the database: 750ms unless set.
func TestReadTimeout(t *testing.T) {
	c, err := Load(env(nil), DefaultGatewayMetrics)
	if err != nil || c.ReadTimeout != 750*time.Millisecond {
		t.Fatalf("default: %v, %v; want 750ms", c.ReadTimeout, err)
	}
	c, err = Load(env(map[string]string{"READ_TIMEOUT": "2s"}), DefaultGatewayMetrics)
	if err != nil || c.ReadTimeout != 2*time.Second {
		t.Fatalf("set: %v, %v; want 2s", c.ReadTimeout, err)
	}
}

func TestApplyRuntimeSetsTheCollectorsTargetUnlessGOGCIsSet(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	for _, tc := range []struct {
		gogc string
		want int
	}{{"", DefaultGoGC}, {"150", 100}, {"off", 100}} {
		c, err := Load(env(map[string]string{"GOGC": tc.gogc}), DefaultWorkerMetrics)
		if err != nil {
			t.Fatal(err)
		}
		debug.SetGCPercent(100) // what the runtime read at start
		c.ApplyRuntime()
		if got := debug.SetGCPercent(100); got != tc.want {
			t.Errorf("GOGC=%q: the collector's target is %d, want %d (set by the runtime itself)", tc.gogc, got, tc.want)
		}
	}
}
