package adopt

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The benchmarks run on a bigger copy of the fixture: ADOPT_BENCH_PER_ROOM
// memories per room (default 10,000: 1,000,000 memories, 100,000 of them
// without server_id), built once per run:
//
//	go test ./adopt -run '^$' -bench . -benchtime 1x

var (
	benchOnce sync.Once
	benchErr  error
)

const benchTemplate = "adopt_bench"

func benchDB(b *testing.B) *db {
	b.Helper()
	benchOnce.Do(func() {
		per := 10000
		if v, err := strconv.Atoi(os.Getenv("ADOPT_BENCH_PER_ROOM")); err == nil && v > 0 {
			per = v
		}
		start := time.Now()
		benchErr = buildFixture(context.Background(), benchTemplate, per)
		fmt.Fprintf(os.Stderr, "bench fixture: %d memories in %s\n", fixtureServers*5*per, time.Since(start).Round(time.Millisecond))
	})
	if benchErr != nil {
		b.Fatal(benchErr)
	}
	return newDBFrom(b, benchTemplate)
}

// clean runs the application's clean traffic (its own filter, its own
// tenant: 80 % page reads, 20 % inserts) on workers connections for d and
// returns transactions per second and the p99 latency.
func clean(b *testing.B, dsn string, workers int, d time.Duration) (float64, time.Duration) {
	b.Helper()
	var n atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close(ctx)
			var mine []time.Duration
			for time.Now().Before(deadline) {
				s := 1 + rand.IntN(fixtureServers)
				tenant := server(s)
				room := md5UUID(fmt.Sprintf("r%d.%d", s, 1+rand.IntN(5)))
				t0 := time.Now()
				err := appTx(ctx, conn, tenant, func(tx pgx.Tx) error {
					if rand.IntN(5) == 0 {
						_, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, type, content) VALUES (gen_random_uuid(), $1, $2, 'message', 'bench')", tenant, room)
						return err
					}
					rows, err := tx.Query(ctx, "SELECT id, content FROM memories WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 20", tenant, room)
					if err != nil {
						return err
					}
					rows.Close()
					return rows.Err()
				})
				if err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
				n.Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	var p99 time.Duration
	if len(lat) > 0 {
		p99 = lat[len(lat)*99/100]
	}
	return float64(n.Load()) / d.Seconds(), p99
}

// BenchmarkBackfill: rows scanned per second filling memories' missing
// server_id from the room, and the concurrent clean traffic's p99 before
// and during the backfill.
func BenchmarkBackfill(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		d := benchDB(b)
		op := mustConnect(b, d.adminDSN())
		p := reviewedPlan(b, op, d)
		_, p99Before := clean(b, d.appDSN(), 2, 3*time.Second)
		var p99During time.Duration
		done := make(chan struct{})
		go func() { defer close(done); _, p99During = clean(b, d.appDSN(), 2, 5*time.Second) }()
		res, err := Backfill(ctx, op, p, []string{"memories"}, Options{BatchSize: 5000})
		if err != nil {
			b.Fatal(err)
		}
		<-done
		b.ReportMetric(res[0].RowsPerSec, "rows/s")
		b.ReportMetric(float64(res[0].Rules[0].Rows), "filled")
		b.ReportMetric(float64(p99Before.Microseconds()), "p99-before-µs")
		b.ReportMetric(float64(p99During.Microseconds()), "p99-during-µs")
	}
}

// BenchmarkOwnerBackfill: rows scanned per second filling the owner of
// memories adopted as kind owned, a tenth of them ownerless, from an
// expression rule (the tenant's first user), on a table already
// backfilled; and the concurrent clean traffic's p99 before and during.
func BenchmarkOwnerBackfill(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		d := benchDB(b)
		op := mustConnect(b, d.adminDSN())
		p := reviewedPlan(b, op, d)
		ownedWithoutOwners(b, op, p, "content = 'hello 3' OR content LIKE 'hello _3'")
		if _, err := Backfill(ctx, op, p, []string{"memories"}, Options{BatchSize: 5000}); err != nil {
			b.Fatal(err)
		}
		var ownerless int64
		if err := op.QueryRow(ctx, "SELECT count(*) FROM memories WHERE entity_id IS NULL").Scan(&ownerless); err != nil {
			b.Fatal(err)
		}
		q := withMemoryOwnerRules(b, p, userRule("first_user", 1))
		_, p99Before := clean(b, d.appDSN(), 2, 3*time.Second)
		var p99During time.Duration
		done := make(chan struct{})
		go func() { defer close(done); _, p99During = clean(b, d.appDSN(), 2, 5*time.Second) }()
		res, err := Backfill(ctx, op, q, []string{"memories"}, Options{BatchSize: 5000})
		if err != nil {
			b.Fatal(err)
		}
		<-done
		if r := res[0]; len(r.OwnerRules) != 1 || r.OwnerRules[0].Rows < ownerless {
			b.Fatalf("owner backfill: %+v, want at least the %d ownerless rows filled", r, ownerless)
		}
		b.ReportMetric(res[0].RowsPerSec, "rows/s")
		b.ReportMetric(float64(res[0].OwnerRules[0].Rows), "filled")
		b.ReportMetric(float64(p99Before.Microseconds()), "p99-before-µs")
		b.ReportMetric(float64(p99During.Microseconds()), "p99-during-µs")
	}
}

// paired runs the application's clean traffic (its own filter, its own
// tenant: page reads and inserts) on workers connections for d, each
// iteration once on table a and once on table b (same tenant, room and
// statement, order alternating), and returns each statement's latency per
// table and kind. Pairing on one connection, and comparing medians,
// cancels most of the load other processes put on this shared machine,
// which dwarfs a few percent when phases are measured apart. With entities
// > 0, each statement also runs as one of the tenant's first entities
// entities (its setting set, its inserts owned by it): clean traffic for an
// owned table (10: every entity of the fixture's tenants), or for a room
// table over participants (3: the fixture's participants of every room).
func paired(b *testing.B, dsn, ta, tb string, workers int, d time.Duration, entities int) (reads, inserts [2][]time.Duration) {
	b.Helper()
	var mu sync.Mutex
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := context.Background()
			conn, err := pgx.Connect(ctx, dsn)
			if err != nil {
				b.Error(err)
				return
			}
			defer conn.Close(ctx)
			var r, ins [2][]time.Duration
			for k := 0; time.Now().Before(deadline); k++ {
				s := 1 + rand.IntN(fixtureServers)
				tenant := server(s)
				room := md5UUID(fmt.Sprintf("r%d.%d", s, 1+rand.IntN(5)))
				insert := rand.IntN(5) == 0
				var ent *string
				if entities > 0 {
					e := md5UUID(fmt.Sprintf("e%d.%d", s, 1+rand.IntN(entities)))
					ent = &e
				}
				one := func(table string) time.Duration {
					t0 := time.Now()
					err := appTx(ctx, conn, tenant, func(tx pgx.Tx) error {
						if ent != nil {
							if _, err := tx.Exec(ctx, "SELECT set_config('app.current_entity_id', $1, true)", *ent); err != nil {
								return err
							}
						}
						if insert {
							_, err := tx.Exec(ctx, "INSERT INTO "+table+" (id, server_id, room_id, entity_id, type, content) VALUES (gen_random_uuid(), $1, $2, $3, 'message', 'bench')", tenant, room, ent)
							return err
						}
						rows, err := tx.Query(ctx, "SELECT id, content FROM "+table+" WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 20", tenant, room)
						if err != nil {
							return err
						}
						rows.Close()
						return rows.Err()
					})
					if err != nil {
						b.Error(err)
					}
					return time.Since(t0)
				}
				var da, db time.Duration
				if k%2 == 0 {
					da, db = one(ta), one(tb)
				} else {
					db, da = one(tb), one(ta)
				}
				dst := &r
				if insert {
					dst = &ins
				}
				dst[0], dst[1] = append(dst[0], da), append(dst[1], db)
			}
			mu.Lock()
			for j := 0; j < 2; j++ {
				reads[j] = append(reads[j], r[j]...)
				inserts[j] = append(inserts[j], ins[j]...)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	return reads, inserts
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	c := append([]time.Duration(nil), ds...)
	sort.Slice(c, func(i, j int) bool { return c[i] < c[j] })
	return c[len(c)/2]
}

// BenchmarkShadowOverhead: clean traffic on a table in shadow, then
// enforced, against an identical copy without RLS, in the same run: both
// copies are made from the backfilled memories (same rows, same physical
// order, same indexes), and statements are paired on the same connections.
// Ratios are of median latencies (throughput ratio = off / shadow). The
// copy under RLS is of kind tenant, owned (owner entity_id; the traffic
// then runs as the tenant's entities, each writing its own rows) or room
// (over participants, whose shadow step comes first; the traffic runs as
// the entities that participate in every room).
func BenchmarkShadowOverhead(b *testing.B) {
	for _, kind := range []string{KindTenant, KindOwned, KindRoom} {
		b.Run(kind, func(b *testing.B) { benchShadowOverhead(b, kind) })
	}
}

func benchShadowOverhead(b *testing.B, kind string) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		d := benchDB(b)
		op := mustConnect(b, d.adminDSN())
		p := reviewedPlan(b, op, d)
		if _, err := Backfill(ctx, op, p, []string{"rooms", "memories"}, Options{BatchSize: 20000}); err != nil {
			b.Fatal(err)
		}
		for _, t := range []string{"mem_off", "mem_on"} {
			for _, s := range []string{
				"CREATE TABLE " + t + " (LIKE memories INCLUDING DEFAULTS INCLUDING INDEXES)",
				"INSERT INTO " + t + " SELECT * FROM memories ORDER BY server_id, room_id, created_at",
				"ALTER TABLE " + t + " ALTER COLUMN server_id DROP DEFAULT",
				"ALTER TABLE " + t + " OWNER TO " + appRole, "VACUUM ANALYZE " + t,
			} {
				if _, err := op.Exec(ctx, s); err != nil {
					b.Fatal(err)
				}
			}
		}
		p = reviewedPlan(b, op, d)
		for j := range p.Tables {
			if p.Tables[j].Name == "mem_off" {
				p.Tables[j].Kind = KindGlobal
			}
		}
		on, entities := []string{"mem_on"}, 0
		switch kind {
		case KindOwned:
			setKind(p, "mem_on", KindOwned, "entity_id")
			entities = 10
		case KindRoom:
			setKind(p, "mem_on", KindRoom, "entity_id")
			for j := range p.Tables {
				if p.Tables[j].Name == "mem_on" {
					p.Tables[j].RoomColumn = "room_id"
					p.Tables[j].Membership = &Membership{Table: "participants", RoomColumn: "room_id", EntityColumn: "entity_id"}
				}
			}
			on, entities = []string{"participants", "mem_on"}, 3
		}
		if _, err := Backfill(ctx, op, p, on, Options{}); err != nil {
			b.Fatal(err)
		}
		if err := Shadow(ctx, op, p, on, Options{}); err != nil {
			b.Fatal(err)
		}
		dur := 8 * time.Second
		report := func(phase string) {
			r, ins := paired(b, d.appDSN(), "mem_off", "mem_on", 2, dur, entities)
			b.ReportMetric(float64(median(r[0]))/float64(median(r[1])), phase+"-read/off")
			b.ReportMetric(float64(median(ins[0]))/float64(median(ins[1])), phase+"-insert/off")
			b.ReportMetric(float64(median(r[0]).Microseconds()), "off-read-µs")
			b.ReportMetric(float64(len(r[0])+len(ins[0])), phase+"-pairs")
		}
		report("shadow")
		if err := Enforce(ctx, op, p, []string{"mem_on"}, EnforceOptions{}); err != nil {
			b.Fatal(err)
		}
		report("enforced")
		if v := count(b, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count"); v != 0 {
			b.Fatalf("clean traffic recorded %d violations", v)
		}
	}
}

// BenchmarkViolationCost: one INSERT of 5,000 rows (rolled back), on a
// copy without RLS (no recorder), on the shadow table with the caller's
// own tenant (every row clean: the WHEN guard is false) and with another
// tenant (every row a recorded violation), interleaved round by round;
// per-row cost from median statement times. Past the first 100 violations
// of a fingerprint only the count is kept: this is the storm path.
// (INSERT rather than UPDATE: repeated updates of the same rows lengthen
// their version chains and drown the difference.)
func BenchmarkViolationCost(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		d := benchDB(b)
		op := mustConnect(b, d.adminDSN())
		app := mustConnect(b, d.appDSN())
		p := reviewedPlan(b, op, d)
		if _, err := Backfill(ctx, op, p, []string{"rooms", "memories"}, Options{BatchSize: 20000}); err != nil {
			b.Fatal(err)
		}
		for _, s := range []string{
			"CREATE TABLE mem_off (LIKE memories INCLUDING DEFAULTS INCLUDING INDEXES)",
			"INSERT INTO mem_off SELECT * FROM memories", "ALTER TABLE mem_off OWNER TO " + appRole,
			// The same foreign keys as memories: their checks are most of an insert's cost.
			"ALTER TABLE mem_off ADD FOREIGN KEY (server_id) REFERENCES servers(id), ADD FOREIGN KEY (room_id) REFERENCES rooms(id), ADD FOREIGN KEY (entity_id) REFERENCES entities(id)",
			"VACUUM ANALYZE mem_off", "VACUUM ANALYZE memories",
		} {
			if _, err := op.Exec(ctx, s); err != nil {
				b.Fatal(err)
			}
		}
		if err := Shadow(ctx, op, p, []string{"rooms", "memories"}, Options{}); err != nil {
			b.Fatal(err)
		}
		// ADOPT_BENCH_KEYS=5000 records every violation with its key (the
		// default records the first 100, then samples).
		if v := os.Getenv("ADOPT_BENCH_KEYS"); v != "" {
			if _, err := op.Exec(ctx, "UPDATE bulkhead_adopt.settings SET value = $1 WHERE name = 'keys_per_transaction'", v); err != nil {
				b.Fatal(err)
			}
		}
		const rows = 5000
		room := md5UUID("r2.1")
		insert := func(table, tenant string) time.Duration {
			tx, err := app.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", tenant); err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			if _, err := tx.Exec(ctx, "INSERT INTO "+table+" (id, server_id, room_id, type, content) SELECT gen_random_uuid(), $1, $2, 'bench', 'x' FROM generate_series(1, $3)",
				server(2), room, rows); err != nil {
				b.Fatal(err)
			}
			return time.Since(t0)
		}
		// The recorder's own time, as EXPLAIN ANALYZE reports it per
		// trigger: far less exposed to this shared machine's noise than a
		// difference of statement times.
		triggers := func(tenant string) time.Duration {
			tx, err := app.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", tenant); err != nil {
				b.Fatal(err)
			}
			var plan []struct {
				Triggers []struct {
					Name  string  `json:"Trigger Name"`
					Time  float64 `json:"Time"`
					Calls int     `json:"Calls"`
				} `json:"Triggers"`
			}
			var raw []byte
			if err := tx.QueryRow(ctx, "EXPLAIN (ANALYZE, FORMAT JSON) INSERT INTO memories (id, server_id, room_id, type, content) SELECT gen_random_uuid(), $1, $2, 'bench', 'x' FROM generate_series(1, $3)",
				server(2), room, rows).Scan(&raw); err != nil {
				b.Fatal(err)
			}
			if err := json.Unmarshal(raw, &plan); err != nil {
				b.Fatal(err)
			}
			var ms float64
			for _, t := range plan[0].Triggers {
				if strings.HasPrefix(t.Name, "bulkhead_adopt_") {
					ms += t.Time
				}
			}
			return time.Duration(ms * float64(time.Millisecond))
		}
		var none, own, foreign, rec []time.Duration
		for r := 0; r < 11; r++ {
			none = append(none, insert("mem_off", server(1)))
			own = append(own, insert("memories", server(2)))
			foreign = append(foreign, insert("memories", server(1)))
			rec = append(rec, triggers(server(1)))
		}
		per := func(ds []time.Duration) float64 { return float64(median(ds).Nanoseconds()) / rows / 1000 }
		b.ReportMetric(per(none), "no-recorder-µs/row")
		b.ReportMetric(per(own)-per(none), "clean-µs/row")
		b.ReportMetric(per(foreign)-per(none), "violation-µs/row")
		b.ReportMetric(per(rec), "recorder-µs/violation")
	}
}

// BenchmarkSwitch: enforce and roll back (to shadow) one big table.
func BenchmarkSwitch(b *testing.B) {
	ctx := context.Background()
	d := benchDB(b)
	op := mustConnect(b, d.adminDSN())
	p := reviewedPlan(b, op, d)
	if _, err := Backfill(ctx, op, p, nil, Options{BatchSize: 20000}); err != nil {
		b.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, Options{}); err != nil {
		b.Fatal(err)
	}
	var enforce, rollback time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := Enforce(ctx, op, p, []string{"memories"}, EnforceOptions{}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if _, err := Rollback(ctx, op, p, []string{"memories"}, "", Options{}); err != nil {
			b.Fatal(err)
		}
		enforce += t1.Sub(t0)
		rollback += time.Since(t1)
	}
	b.ReportMetric(float64(enforce.Microseconds())/float64(b.N)/1000, "enforce-ms")
	b.ReportMetric(float64(rollback.Microseconds())/float64(b.N)/1000, "rollback-ms")
}

// BenchmarkKeys: Keys on every tenant table of the big fixture (memories
// holds 20 servers x 5 rooms x ADOPT_BENCH_PER_ROOM rows, 1,000,000 by
// default), then UndoKeys; each step's time.
func BenchmarkKeys(b *testing.B) {
	ctx := context.Background()
	d := benchDB(b)
	op := mustConnect(b, d.adminDSN())
	p := reviewedPlan(b, op, d)
	if _, err := Backfill(ctx, op, p, nil, Options{BatchSize: 20000}); err != nil {
		b.Fatal(err)
	}
	var keys, undo time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		res, err := Keys(ctx, op, p, nil, Options{})
		if err != nil || len(res) != 8 {
			b.Fatalf("keys: %d replaced, %v", len(res), err)
		}
		t1 := time.Now()
		if err := UndoKeys(ctx, op, p, nil, Options{}); err != nil {
			b.Fatal(err)
		}
		keys += t1.Sub(t0)
		undo += time.Since(t1)
	}
	b.ReportMetric(float64(keys.Milliseconds())/float64(b.N), "keys-ms")
	b.ReportMetric(float64(undo.Milliseconds())/float64(b.N), "undo-ms")
}

// BenchmarkProxyOverhead: the application's clean page reads (its own
// filter, its own tenant, memories in shadow) directly and through adopt
// proxy replaying none, 1 % and every read, interleaved on one connection
// each; ratios of median latencies (throughput through the proxy / direct).
func BenchmarkProxyOverhead(b *testing.B) {
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		d := benchDB(b)
		op := mustConnect(b, d.adminDSN())
		p := reviewedPlan(b, op, d)
		if _, err := Backfill(ctx, op, p, []string{"rooms", "memories"}, Options{BatchSize: 20000}); err != nil {
			b.Fatal(err)
		}
		if err := Shadow(ctx, op, p, []string{"rooms", "memories"}, Options{}); err != nil {
			b.Fatal(err)
		}
		conns := []*pgx.Conn{mustConnect(b, d.appDSN())}
		names := []string{"direct"}
		for _, rate := range []float64{0, 0.01, 1} {
			_, dsn, _ := startProxy(b, d, rate)
			conns = append(conns, connectMode(b, dsn, pgx.QueryExecModeCacheStatement))
			names = append(names, fmt.Sprintf("proxy-%g", rate))
		}
		for _, c := range conns {
			if _, err := c.Exec(ctx, "SET app.current_tenant_id = '"+server(1)+"'"); err != nil {
				b.Fatal(err)
			}
		}
		lat := make([][]time.Duration, len(conns))
		q := "SELECT id, content FROM memories WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 20"
		deadline := time.Now().Add(8 * time.Second)
		for n := 0; time.Now().Before(deadline); n++ {
			room := md5UUID(fmt.Sprintf("r1.%d", n%5+1))
			for k := range conns {
				j := (k + n) % len(conns)
				start := time.Now()
				rows, err := conns[j].Query(ctx, q, server(1), room)
				if err == nil {
					for rows.Next() {
					}
					rows.Close()
					err = rows.Err()
				}
				if err != nil {
					b.Fatalf("%s: %v", names[j], err)
				}
				lat[j] = append(lat[j], time.Since(start))
			}
		}
		direct := median(lat[0])
		b.ReportMetric(float64(direct.Microseconds()), "direct-µs")
		for j := 1; j < len(conns); j++ {
			b.ReportMetric(float64(direct)/float64(median(lat[j])), names[j]+"/direct")
		}
		b.ReportMetric(float64(len(lat[0])), "samples")
	}
}
