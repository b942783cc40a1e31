package adopt

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// workload plays the legacy application: connected as the tables' owner,
// the tenant in app.current_tenant_id and the acting entity (the tenant's
// first user) in app.current_entity_id, its own WHERE server_id filters,
// reads and writes for many tenants, a query that forgets the filter, and
// an update of another entity's memory (memories is kind owned).
type workload struct {
	dsn      string
	enforced atomic.Bool // set only while every table is enforced
	// epoch counts setEnforced calls: a forgetful read is judged against
	// enforcement only if no transition began or ended while it ran (a
	// request that read the flag just before a rollback may run after it).
	epoch atomic.Int64
	// replay, when set, runs the forgetful read through the shadow
	// replayer; foreignSeen counts the other tenants' rows those replayed
	// reads returned (what shadow must record, exactly).
	replay      atomic.Pointer[Replayer]
	replaying   sync.RWMutex // held for reading by a replayed read in flight
	foreignSeen atomic.Int64

	// key, when set, is entered as a signed context in every transaction
	// besides the application's own setting (the application's part of
	// adopt harden).
	key atomic.Pointer[postgres.ContextKey]

	requests, failures, wrongTenant atomic.Int64
	forgetful                       atomic.Int64
	// wrongEntity counts rows of another entity an update changed while
	// memories was enforced from before the update began to after it
	// committed; foreignWrites counts those updates at any time.
	wrongEntity, foreignWrites atomic.Int64

	mu      sync.Mutex
	errs    []error
	written []string    // memories inserted and committed
	links   [][2]string // message_server_agents inserted and committed
}

// setEnforced records a transition: false before a rollback starts, true
// once an enforcement has finished.
func (w *workload) setEnforced(on bool) {
	w.epoch.Add(1)
	w.enforced.Store(on)
}

func (w *workload) fail(err error) {
	w.failures.Add(1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.errs) < 5 {
		w.errs = append(w.errs, err)
	}
}

// run starts workers until ctx ends; the returned func waits for them.
func (w *workload) run(ctx context.Context, workers int) func() {
	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := pgx.Connect(context.Background(), w.dsn)
			if err != nil {
				w.fail(err)
				return
			}
			defer conn.Close(context.Background())
			for ctx.Err() == nil {
				w.one(conn)
			}
		}()
	}
	return wg.Wait
}

func (w *workload) one(conn *pgx.Conn) {
	ctx := context.Background()
	s := 1 + rand.IntN(fixtureServers)
	tenant, entity := server(s), md5UUID(fmt.Sprintf("e%d.1", s))
	j := 1 + rand.IntN(5)
	room := md5UUID(fmt.Sprintf("r%d.%d", s, j))
	op := rand.IntN(100)
	epoch := w.epoch.Load()
	enforced := w.enforced.Load()
	var foreign int64 // other tenants' rows a forgetful read returned
	var mem string
	var link [2]string
	var changed int64 // rows of another entity an update changed
	err := entityTx(ctx, conn, caller{tenant, entity}, func(tx pgx.Tx) error {
		if k := w.key.Load(); k != nil {
			sql, args, err := k.EnterSQL(bulkhead.Scope{Tenant: uuid.MustParse(tenant), Entity: uuid.MustParse(entity)})
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, sql, args...); err != nil {
				return err
			}
		}
		switch {
		case op < 50: // the application's own filtered read
			rows, err := textRows(ctx, tx, "SELECT id, server_id FROM memories WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 20", tenant, room)
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r[1] != tenant {
					w.wrongTenant.Add(1)
				}
			}
		case op < 75:
			mem = uuid.NewString()
			_, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, entity_id, type, content) VALUES ($1, $2, $3, $4, 'message', 'load')",
				mem, tenant, room, entity)
			return err
		case op < 85: // a new agent joins a guild: the junction has no server_id
			link = [2]string{md5UUID(fmt.Sprintf("ms%d", 1+rand.IntN(5))), uuid.NewString()}
			if _, err := tx.Exec(ctx, "INSERT INTO agents (id, server_id, name) VALUES ($1, $2, 'load')", link[1], tenant); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO message_server_agents (message_server_id, agent_id) VALUES ($1, $2)", link[0], link[1])
			return err
		case op < 90: // edits a memory of the tenant's second user (fixture row k = 1)
			w.foreignWrites.Add(1)
			tag, err := tx.Exec(ctx, "UPDATE memories SET type = type WHERE id = $1", md5UUID(fmt.Sprintf("m%d.%d.1", s, j)))
			changed = tag.RowsAffected()
			return err
		default: // forgets the tenant filter
			w.forgetful.Add(1)
			w.replaying.RLock()
			defer w.replaying.RUnlock()
			rp := w.replay.Load()
			rows, err := rp.Query(ctx, tx, "SELECT id, server_id FROM memories WHERE content = 'hello 7'")
			if err != nil {
				return err
			}
			for _, r := range rows {
				if r[1] != tenant {
					foreign++
				}
				if rp != nil && r[1] != tenant {
					w.foreignSeen.Add(1)
				}
			}
		}
		return nil
	})
	w.requests.Add(1)
	if err != nil {
		w.fail(fmt.Errorf("op %d: %w", op, err))
		return
	}
	if enforced && w.epoch.Load() == epoch {
		w.wrongTenant.Add(foreign) // enforced from before it began to after it committed
		w.wrongEntity.Add(changed)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if mem != "" {
		w.written = append(w.written, mem)
	}
	if link[1] != "" {
		w.links = append(w.links, link)
	}
}

// TestZeroDowntime runs plan -> backfill -> shadow -> enforce -> rollback
// -> enforce -> harden (prepare, then the application signs, then the
// switch) -> keys -> harden --undo -> rollback to original under the
// legacy workload, memories adopted as kind owned: no failed request, no
// lost write, no wrong-tenant row and no change to another entity's row
// once enforced. Shadow records the forgetful reads through the library
// Replayer, and the edits of another entity's memory through its trigger.
func TestZeroDowntime(t *testing.T) { zeroDowntime(t, false) }

// TestZeroDowntimeThroughTheProxy is the same cycle with the application
// connected through adopt proxy, replaying every read, from start to end:
// the proxy fails no request across the transitions, and what shadow
// records is exactly the other tenants' rows the forgetful reads returned
// (a replay runs inside the application's transaction, whose lock on the
// table holds enforce's ALTER POLICY back until it is done).
func TestZeroDowntimeThroughTheProxy(t *testing.T) { zeroDowntime(t, true) }

func zeroDowntime(t *testing.T, viaProxy bool) {
	ctx := context.Background()
	d := newDB(t)
	op := mustConnect(t, d.adminDSN())
	w := &workload{dsn: d.appDSN()}
	var px *Proxy
	stopProxy := func() {}
	if viaProxy {
		// The proxy needs the plan only for the tenant setting, which
		// Inspect reads from the catalog before any phase.
		px, w.dsn, stopProxy = startProxy(t, d, 1)
	}
	wctx, stop := context.WithCancel(ctx)
	wait := w.run(wctx, 4)
	defer func() { stop(); wait() }()
	o := Options{BatchSize: 2000}
	pause := func() { time.Sleep(300 * time.Millisecond) }
	var perStep []int64
	step := func(name string, f func() error) {
		t.Helper()
		before := w.requests.Load()
		start := time.Now()
		if err := f(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		pause()
		perStep = append(perStep, w.requests.Load()-before)
		t.Logf("%-22s %6s, %d requests meanwhile", name, time.Since(start).Round(time.Millisecond), w.requests.Load()-before)
	}
	var p *Plan
	step("plan", func() error {
		p = reviewedPlan(t, op, d)
		setKind(p, "memories", KindOwned, "entity_id")
		return p.Validate()
	})
	step("backfill", func() error { _, err := Backfill(ctx, op, p, nil, o); return err })
	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rate := 1.0
	if viaProxy {
		rate = 0 // the proxy replays; the Replayer only marks the shadow phase
	}
	rp := NewReplayer(pool, rate)
	defer rp.Close()
	if viaProxy {
		// Count every forgetful read's foreign rows from the start: an
		// upper bound of what the proxy can record.
		w.replay.Store(rp)
	}
	step("shadow", func() error {
		err := Shadow(ctx, op, p, nil, o)
		w.replay.Store(rp)
		return err
	})
	recorded := func() int64 {
		return count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count WHERE rel = 'query'")
	}
	step("enforce", func() error {
		if viaProxy {
			// The proxy's records are written asynchronously: wait for the
			// first, a bounded while. They are checked at the end.
			for deadline := time.Now().Add(5 * time.Second); recorded() == 0 && time.Now().Before(deadline); {
				time.Sleep(50 * time.Millisecond)
			}
		} else {
			w.replay.Store(nil)
			w.replaying.Lock() // replayed reads in flight have finished
			w.replaying.Unlock()
			rp.Close()
			// Shadow recorded exactly the other tenants' rows the
			// forgetful reads returned.
			if n := recorded(); n != w.foreignSeen.Load() || n == 0 || rp.Dropped() != 0 {
				t.Errorf("shadow recorded %d hidden rows (%d dropped), the forgetful reads returned %d foreign rows", n, rp.Dropped(), w.foreignSeen.Load())
			}
		}
		// Every edit of another entity's memory in shadow was let through
		// and recorded (a trigger, synchronous); the count can't exceed
		// the edits made.
		if n := count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count WHERE rel = 'public.memories' AND op = 'UPDATE'"); n == 0 || n > w.foreignWrites.Load() {
			t.Errorf("shadow recorded %d edits of another entity's memory; %d were made in all", n, w.foreignWrites.Load())
		}
		// The operator has read the report: the forgetful query and the
		// foreign edit are the known bugs that enforcement fixes.
		if err := Enforce(ctx, op, p, nil, EnforceOptions{Options: o}); !errors.Is(err, ErrViolations) {
			return fmt.Errorf("enforce with recorded violations: %v", err)
		}
		err := Enforce(ctx, op, p, nil, EnforceOptions{Options: o, Force: true})
		w.setEnforced(err == nil)
		return err
	})
	step("rollback to shadow", func() error {
		w.setEnforced(false)
		_, err := Rollback(ctx, op, p, nil, "", o)
		return err
	})
	step("enforce again", func() error {
		err := Enforce(ctx, op, p, nil, EnforceOptions{Options: o, Force: true})
		w.setEnforced(err == nil)
		return err
	})
	key := contextKey(t)
	step("harden --prepare", func() error {
		_, err := Harden(ctx, op, p, key, HardenOptions{Options: o, Prepare: true})
		w.key.Store(&key) // the application signs from now on
		return err
	})
	step("harden", func() error {
		switched, err := Harden(ctx, op, p, key, HardenOptions{Options: o})
		if err == nil && !switched {
			err = errors.New("harden did not switch")
		}
		return err
	})
	step("keys", func() error { _, err := Keys(ctx, op, p, nil, o); return err })
	step("harden --undo", func() error {
		_, err := Unharden(ctx, op, p, o)
		return err
	})
	step("rollback to original", func() error {
		w.setEnforced(false)
		_, err := Rollback(ctx, op, p, nil, PhaseOriginal, o)
		return err
	})
	stop()
	wait()
	stopProxy()
	if px != nil {
		if st := px.Stats(); st.Failed != 0 || st.Replayed == 0 || px.Dropped() != 0 {
			t.Errorf("proxy: %+v, %d records dropped; want replays, none failed or dropped", st, px.Dropped())
		} else {
			t.Logf("proxy: %+v", st)
		}
		// No false positive: every recorded key is a 'hello 7' row of
		// another tenant than the one it was recorded under, and no more
		// rows were recorded than the forgetful reads returned.
		if n := recorded(); n == 0 || n > w.foreignSeen.Load() {
			t.Errorf("the proxy recorded %d hidden rows; the forgetful reads returned %d foreign rows in all", n, w.foreignSeen.Load())
		}
		if bad := count(t, op, `SELECT count(*) FROM bulkhead_adopt.violation v WHERE v.rel = 'query' AND v.row_key IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM memories m WHERE m.id::text = v.row_key AND m.content = 'hello 7' AND m.server_id::text <> v.tenant)`); bad != 0 {
			t.Errorf("%d recorded keys are not another tenant's row the forgetful read returned", bad)
		}
	}
	t.Logf("%d requests (%d forgetful, %d edits of another entity's memory), %d failed, %d wrong-tenant rows, %d wrong-entity rows",
		w.requests.Load(), w.forgetful.Load(), w.foreignWrites.Load(), w.failures.Load(), w.wrongTenant.Load(), w.wrongEntity.Load())
	if w.failures.Load() != 0 {
		t.Errorf("%d failed requests, e.g. %v", w.failures.Load(), w.errs)
	}
	if w.wrongTenant.Load() != 0 {
		t.Errorf("%d wrong-tenant rows", w.wrongTenant.Load())
	}
	if w.wrongEntity.Load() != 0 {
		t.Errorf("%d rows of another entity changed while enforced", w.wrongEntity.Load())
	}
	for i, n := range perStep {
		if n == 0 {
			t.Errorf("step %d: no request ran during it", i)
		}
	}
	// No lost write.
	var lost int64
	if err := op.QueryRow(ctx, "SELECT count(*) FROM unnest($1::uuid[]) x WHERE NOT EXISTS (SELECT 1 FROM memories m WHERE m.id = x)", w.written).Scan(&lost); err != nil || lost != 0 {
		t.Errorf("%d of %d written memories lost (%v)", lost, len(w.written), err)
	}
	agents := make([]string, len(w.links))
	for i, l := range w.links {
		agents[i] = l[1]
	}
	if err := op.QueryRow(ctx, "SELECT count(*) FROM unnest($1::uuid[]) x WHERE NOT EXISTS (SELECT 1 FROM message_server_agents m WHERE m.agent_id = x)", agents).Scan(&lost); err != nil || lost != 0 {
		t.Errorf("%d of %d written links lost (%v)", lost, len(agents), err)
	}
	assertOriginalCatalog(t, op, d)
}
