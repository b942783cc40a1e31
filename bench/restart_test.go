package bench

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"testing"
	"time"
)

// TestPgBouncerRestartUnderLoad kills the PgBouncer between the HTTP API
// and PostgreSQL under a load of many tenants' users and starts it again:
// every answer is 2xx or 503 with Retry-After, no answer carries a row of
// another tenant or room, and the same server process answers 2xx again
// after the restart. Durations bound the phases; nothing is timed.
func TestPgBouncerRestartUnderLoad(t *testing.T) {
	var log bytes.Buffer
	res, err := RunRestart(context.Background(), RestartConfig{Log: &log, Tenants: 20, Clients: 16, PoolSize: 2, Before: 2 * time.Second, Outage: 2 * time.Second, After: 4 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	res.Table(&b)
	t.Log("\n" + b.String())
	if os.Getenv("BULKHEAD_RESTART_LOG") != "" {
		os.WriteFile(os.Getenv("BULKHEAD_RESTART_LOG"), log.Bytes(), 0o644)
	}
	if res.WrongRows != 0 {
		t.Errorf("%d rows of another tenant or room in 2xx answers", res.WrongRows)
	}
	if n := res.Others(); n != 0 {
		t.Errorf("%d answers other than 2xx and 503 with Retry-After", n)
	}
	before, down, after := res.Phases[0], res.Phases[1], res.Phases[2]
	if before.OK == 0 || res.Rows == 0 {
		t.Errorf("no successful load before the kill: %+v", before)
	}
	if down.Unavail == 0 {
		t.Errorf("no 503 while PgBouncer was down: %+v", down)
	}
	if after.OK == 0 || res.Recovery < 0 {
		t.Errorf("no 2xx after PgBouncer came back: %+v", after)
	}
	if res.ReadyDown != http.StatusServiceUnavailable || res.ReadyUp != http.StatusOK {
		t.Errorf("/readyz: %d while down, %d after; want 503 then 200", res.ReadyDown, res.ReadyUp)
	}
}
