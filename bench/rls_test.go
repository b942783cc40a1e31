package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestRunRLSSmall runs the whole benchmark on a tiny dataset: it checks the
// harness works and the round trips, never the timings.
func TestRunRLSSmall(t *testing.T) {
	res, err := RunRLS(context.Background(), Config{Tenants: 20, Memories: 4000, BigRoom: 600, Ops: 100, PGBenchRounds: 1, PGBenchSeconds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cases) != 5 {
		t.Fatalf("%d cases, want 5", len(res.Cases))
	}
	for _, c := range res.Cases {
		if c.RLS <= 0 || c.Plain <= 0 || c.App <= 0 || c.AA <= 0 {
			t.Errorf("%s: empty measurement %+v", c.Name, c)
		}
	}
	want := []int64{1, 2} // Read: one; InScope with one statement: batch + commit
	for i, rt := range res.RoundTrips {
		if rt.N != want[i] {
			t.Errorf("%s: %d round trips, want %d", rt.Name, rt.N, want[i])
		}
	}
	if res.Rows["memories"] < 4000 || res.Rows["tenants"] != 20 {
		t.Errorf("dataset: %v", res.Rows)
	}
	// pgbench ran every side and checked each script reads its row.
	if pb := res.PGBench; pb == nil || len(pb.RLS) != 1 || pb.RLS[0] <= 0 || pb.Plain[0] <= 0 || pb.App[0] <= 0 {
		t.Errorf("pgbench cross-check: %+v", res.PGBench)
	}
	var b bytes.Buffer
	res.Markdown(&b, "test")
	if !strings.Contains(b.String(), "| append memory |") {
		t.Errorf("markdown lacks the append row:\n%s", b.String())
	}
}

// TestRunCryptoSmall runs the encryption benchmark on a tiny load: it
// checks the harness and the cache accounting, never the timings.
func TestRunCryptoSmall(t *testing.T) {
	res, err := RunCrypto(context.Background(), CryptoConfig{Ops: 20, Tenants: 40})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Seal) != 3 || res.AgentSealed <= 0 || res.AgentPlain <= 0 {
		t.Fatalf("result: %+v", res)
	}
	for _, c := range res.Cache {
		if c.Hits+c.Misses != int64(20*40) {
			t.Errorf("%s: %d hits + %d misses, want %d operations", c.Name, c.Hits, c.Misses, 20*40)
		}
	}
	if first := res.Cache[0]; first.Misses != 40 { // cache holds every tenant: one miss each
		t.Errorf("cache ≥ tenants: %d misses, want 40", first.Misses)
	}
}

// TestRunAPISmall runs the HTTP benchmark briefly: the harness works, every
// request of every side (four: the A/A control among them) succeeds, and
// the login storm logs in.
func TestRunAPISmall(t *testing.T) {
	res, err := RunAPI(context.Background(), APIConfig{Tenants: 10, Memories: 2000, Clients: 4, Duration: 1500 * time.Millisecond, Rounds: 2, PinPostgres: -1})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Cases) != 4 {
		t.Fatalf("%d sides, want 4", len(res.Cases))
	}
	for _, c := range res.Cases {
		if c.Errors != 0 || c.RPS <= 0 {
			t.Errorf("%s: %+v", c.Name, c)
		}
	}
	if res.Logins == 0 || res.StormReads == 0 {
		t.Errorf("login storm: %d logins, %d reads", res.Logins, res.StormReads)
	}
}
