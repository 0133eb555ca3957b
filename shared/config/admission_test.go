package config

import (
	"strings"
	"testing"
	"time"
)

func TestAdmissionSettings(t *testing.T) {
	c, err := Load(env(nil), DefaultGatewayMetrics)
	if a := c.Admission; err != nil || a.MaxInFlight != 0 || a.MinInFlight != 16 || a.TargetLatency != 250*time.Millisecond {
		t.Fatalf("defaults %+v, %v", a, err)
	}
	c, err = Load(env(map[string]string{"ADMISSION_MAX_IN_FLIGHT": "128", "ADMISSION_MIN_IN_FLIGHT": "8",
		"ADMISSION_TARGET_LATENCY": "100ms"}), DefaultGatewayMetrics)
	if a := c.Admission; err != nil || a.MaxInFlight != 128 || a.MinInFlight != 8 || a.TargetLatency != 100*time.Millisecond {
		t.Fatalf("set %+v, %v", a, err)
	}
	for name, v := range map[string]string{"ADMISSION_MIN_IN_FLIGHT": "200", "ADMISSION_MAX_IN_FLIGHT": "-1"} {
		vars := map[string]string{"ADMISSION_MAX_IN_FLIGHT": "128", name: v}
		if _, err := Load(env(vars), DefaultGatewayMetrics); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s=%s: error %v, want one naming it", name, v, err)
		}
	}
}
