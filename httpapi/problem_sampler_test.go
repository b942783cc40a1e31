package httpapi

import (
	"testing"
	"time"
)

// TestLogSampler: one 503 line a second, with the count of those held back.
func TestLogSampler(t *testing.T) {
	l := &logSampler{every: time.Second}
	t0 := time.Unix(1000, 0)
	if ok, n := l.allow(t0); !ok || n != 0 {
		t.Fatalf("first event: %v %d, want logged", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.allow(t0.Add(time.Duration(i+1) * 100 * time.Millisecond)); ok {
			t.Fatalf("event %d within the second was logged", i)
		}
	}
	if ok, n := l.allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Fatalf("a second later: %v %d, want logged with 5 held back", ok, n)
	}
}
