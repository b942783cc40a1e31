package adopt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// startProxy runs a Proxy in front of d's database and returns the
// application's URL through it and a stop that flushes the records.
func startProxy(t testing.TB, d *db, sample float64) (*Proxy, string, func()) {
	t.Helper()
	return startProxyWith(t, d, ProxyOptions{Sample: sample})
}

// startProxyWith is startProxy with more options; Listen is set here, and
// Upstream (d's Unix socket) unless o has one.
func startProxyWith(t testing.TB, d *db, o ProxyOptions) (*Proxy, string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := pgx.ParseConfig(d.appDSN())
	if err != nil {
		t.Fatal(err)
	}
	o.Listen = "127.0.0.1:0"
	if o.Upstream == "" {
		o.Upstream = filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	px, err := NewProxy(pool, o)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- px.Serve(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("proxy: %v", err)
			}
			pool.Close()
		})
	}
	t.Cleanup(stop)
	return px, fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", appRole, appPassword, px.Addr(), d.name), stop
}

// shadowBehindProxy is a fresh fixture in shadow with a proxy replaying
// every read in front of it: the database, the operator's connection,
// the plan, the proxy, the application's URL through it and the stop that flushes
// the records.
func shadowBehindProxy(t *testing.T) (*db, *pgx.Conn, *Plan, *Proxy, string, func()) {
	t.Helper()
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	px, dsn, stop := startProxy(t, d, 1)
	return d, op, p, px, dsn, stop
}

// hijack connects to dsn (authenticated) and takes the raw connection
// over, closed at the test's end.
func hijack(t *testing.T, dsn string) *pgconn.HijackedConn {
	t.Helper()
	c, err := pgconn.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	hc, err := c.Hijack()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Conn.Close() })
	return hc
}

func connectMode(t testing.TB, dsn string, mode pgx.QueryExecMode) *pgx.Conn {
	t.Helper()
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DefaultQueryExecMode = mode
	conn, err := pgx.ConnectConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("connect %v: %v", mode, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func ids(t *testing.T, q querier, sql string, args ...any) []string {
	t.Helper()
	rows, err := textRows(context.Background(), q, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r[0])
	}
	sort.Strings(out)
	return out
}

// TestProxyRecordsForgetfulReads: through the proxy, in every pgx
// execution mode, outside and inside transactions (READ COMMITTED,
// REPEATABLE READ READ ONLY), the application gets exactly the rows it gets
// directly, its transaction and settings as it left them, its errors and
// its cancels; every replayed forgetful read records exactly the foreign
// rows it returned, under the caller's tenant; clean reads record nothing.
func TestProxyRecordsForgetfulReads(t *testing.T) {
	ctx := context.Background()
	d, op, p, px, dsn, stop := shadowBehindProxy(t)
	direct := mustConnect(t, d.appDSN())
	s1 := server(1)
	room1 := md5UUID("r1.1")

	// The model: the foreign rows each forgetful read returns, from the
	// superuser's view of the data.
	foreignMemories := ids(t, op, "SELECT id FROM memories WHERE content = 'hello 7' AND server_id IS DISTINCT FROM $1", s1)
	foreignRooms := ids(t, op, "SELECT id FROM rooms WHERE name = 'room 3' AND server_id IS DISTINCT FROM $1", s1)
	if len(foreignMemories) == 0 || len(foreignRooms) == 0 {
		t.Fatal("the fixture has no foreign rows to find")
	}
	foreign := map[string]bool{}
	for _, k := range append(slices.Clone(foreignMemories), foreignRooms...) {
		foreign[k] = true
	}
	if _, err := direct.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
		t.Fatal(err)
	}

	clean := "SELECT id, content FROM memories WHERE server_id = $1 AND room_id = $2 ORDER BY created_at DESC LIMIT 20"
	var pgErr *pgconn.PgError
	var wantHidden, batchesSkipped int64
	modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeExec, pgx.QueryExecModeSimpleProtocol}
	for _, mode := range modes {
		app := connectMode(t, dsn, mode)
		// Outside a transaction, the tenant in a session setting.
		if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		for _, q := range []string{clean, "SELECT id FROM memories WHERE content = 'hello 7'"} {
			args := []any{}
			if q == clean {
				args = []any{s1, room1}
			}
			got, want := ids(t, app, q, args...), ids(t, direct, q, args...)
			if !slices.Equal(got, want) {
				t.Fatalf("%v: %s through the proxy returned %d rows, directly %d", mode, q, len(got), len(want))
			}
		}
		wantHidden += int64(len(foreignMemories))

		// Inside the application's READ COMMITTED transaction, a
		// transaction-local tenant; the replay leaves nothing behind.
		err := appTx(ctx, app, s1, func(tx pgx.Tx) error {
			if got := ids(t, tx, "SELECT id FROM rooms WHERE name = $1", "room 3"); len(got) != len(foreignRooms)+1 {
				return fmt.Errorf("forgetful rooms read returned %d rows, want %d", len(got), len(foreignRooms)+1)
			}
			var strict, timeout, tenant string
			if err := tx.QueryRow(ctx, "SELECT coalesce(current_setting('bulkhead_adopt.strict', true), ''), current_setting('statement_timeout'), current_setting('app.current_tenant_id')").Scan(&strict, &timeout, &tenant); err != nil {
				return err
			}
			if strict == "on" || timeout != "0" || tenant != s1 {
				return fmt.Errorf("after a replay the transaction sees strict=%q statement_timeout=%q tenant=%q", strict, timeout, tenant)
			}
			// An error inside the transaction is the client's, and the
			// client's own savepoints still work.
			if _, err := tx.Exec(ctx, "SAVEPOINT mine"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "SELECT * FROM no_such_table")
			if !errors.As(err, &pgErr) || pgErr.Code != "42P01" {
				return fmt.Errorf("missing table through the proxy: %v", err)
			}
			_, err = tx.Exec(ctx, "ROLLBACK TO SAVEPOINT mine")
			return err
		})
		if err != nil {
			t.Fatalf("%v: %v", mode, err)
		}
		wantHidden += int64(len(foreignRooms))

		// REPEATABLE READ, READ ONLY.
		err = pgx.BeginTxFunc(ctx, app, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SELECT set_config('app.current_tenant_id', $1, true)", s1); err != nil {
				return err
			}
			if got := ids(t, tx, "SELECT id FROM memories WHERE content = 'hello 7'"); len(got) != len(foreignMemories)+countOwn(t, op, s1) {
				return fmt.Errorf("READ ONLY forgetful read returned %d rows", len(got))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("%v: READ ONLY: %v", mode, err)
		}
		wantHidden += int64(len(foreignMemories))

		// A pipelined batch: replayed when its statements end with one
		// Sync the client waits for, skipped (never interleaved) when the
		// client sent more behind it.
		before := px.Stats()
		b := &pgx.Batch{}
		b.Queue(clean, s1, room1)
		b.Queue("SELECT id FROM rooms WHERE name = 'room 3'")
		if err := app.SendBatch(ctx, b).Close(); err != nil {
			t.Fatalf("%v: batch: %v", mode, err)
		}
		after := px.Stats()
		switch {
		case after.Reads == before.Reads:
			// The simple protocol sends a batch as one Query of several
			// statements: not one read, never replayed.
		case after.Skipped-before.Skipped == 2 && after.Hidden == before.Hidden:
			batchesSkipped++
		case after.Replayed-before.Replayed == 2 && after.Hidden-before.Hidden == int64(len(foreignRooms)):
			wantHidden += int64(len(foreignRooms))
		default:
			t.Fatalf("%v: batch: stats before %+v, after %+v", mode, before, after)
		}

		// A cancel reaches the server: the backend stops sleeping. (pgx
		// gives up on its side either way; without the cancel the backend
		// would sleep on, not noticing a closed socket.)
		cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		start := time.Now()
		_, err = app.Exec(cctx, "SELECT pg_sleep(10) AS cancelled_through_the_proxy")
		cancel()
		if err == nil || time.Since(start) > 5*time.Second {
			t.Fatalf("%v: a cancelled pg_sleep(10) through the proxy: %v after %s", mode, err, time.Since(start))
		}
		sleeping := func() int64 {
			return count(t, op, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%cancelled_through_the_proxy%' AND pid <> pg_backend_pid()")
		}
		for deadline := time.Now().Add(3 * time.Second); sleeping() != 0 && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if sleeping() != 0 {
			t.Fatalf("%v: the cancelled statement still runs on the server", mode)
		}
	}
	stop()
	st := px.Stats()
	// One read per mode failed (no_such_table): its transaction is
	// aborted, so it is skipped, not replayed.
	if st.Failed != 0 || st.Skipped != int64(len(modes))+2*batchesSkipped || st.Replayed+st.Skipped != st.Sampled || st.Sampled == 0 || st.Hidden != wantHidden {
		t.Fatalf("proxy stats %+v, want every sampled read replayed and %d hidden rows", st, wantHidden)
	}
	if px.Dropped() != 0 {
		t.Fatalf("%d records dropped", px.Dropped())
	}
	rep, err := Read(ctx, op, p, timeZero)
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, v := range rep.Violations {
		if v.Table != "query" {
			t.Errorf("a read through the proxy recorded a write: %+v", v)
			continue
		}
		if v.Tenant != s1 {
			t.Errorf("recorded under tenant %q, want the caller %s", v.Tenant, s1)
		}
		if v.Fingerprint == Fingerprint(clean) {
			t.Errorf("the clean read was recorded: %+v", v)
		}
		for _, k := range v.Keys {
			if !foreign[k] {
				t.Errorf("recorded key %s is not a foreign row the forgetful reads returned", k)
			}
		}
		n += v.Count
	}
	if n != wantHidden {
		t.Fatalf("recorded %d hidden rows, want %d", n, wantHidden)
	}
}

func countOwn(t *testing.T, op *pgx.Conn, tenant string) int {
	t.Helper()
	return int(count(t, op, "SELECT count(*) FROM memories WHERE content = 'hello 7' AND server_id = $1", tenant))
}

// TestProxyExactUnderChurn: clean reads of rows another session inserts
// and deletes all the time, in READ COMMITTED transactions (each run of a
// replay has its own snapshot) and outside transactions, record nothing.
func TestProxyExactUnderChurn(t *testing.T) {
	ctx := context.Background()
	d, op, _, px, dsn, stop := shadowBehindProxy(t)
	s1, room1 := server(1), md5UUID("r1.1")

	churner := mustConnect(t, d.adminDSN())
	var stopChurn atomic.Bool
	var churned atomic.Int64
	churnDone := make(chan error, 1)
	go func() {
		for !stopChurn.Load() {
			// The churner's writes are its tenant's own: shadow records none.
			err := appTx(ctx, churner, s1, func(tx pgx.Tx) error {
				_, err := tx.Exec(ctx, `WITH gone AS (DELETE FROM memories WHERE content = 'churn' AND id IN (SELECT id FROM memories WHERE content = 'churn' LIMIT 5))
  INSERT INTO memories (id, server_id, room_id, type, content) SELECT gen_random_uuid(), $1, $2, 'message', 'churn' FROM generate_series(1, 5)`, s1, room1)
				return err
			})
			if err != nil {
				churnDone <- err
				return
			}
			churned.Add(1)
		}
		churnDone <- nil
	}()

	app := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
	if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
		t.Fatal(err)
	}
	q := "SELECT id FROM memories WHERE server_id = $1 AND content = 'churn'"
	deadline := time.Now().Add(2 * time.Second)
	for i := 0; time.Now().Before(deadline); i++ {
		if i%2 == 0 {
			ids(t, app, q, s1)
			continue
		}
		if err := appTx(ctx, app, s1, func(tx pgx.Tx) error { ids(t, tx, q, s1); return nil }); err != nil {
			t.Fatal(err)
		}
	}
	stopChurn.Store(true)
	if err := <-churnDone; err != nil {
		t.Fatal(err)
	}
	stop()
	st := px.Stats()
	if st.Replayed < 20 || churned.Load() < 20 || st.Failed != 0 {
		t.Fatalf("too little happened to show anything: stats %+v, %d churn statements", st, churned.Load())
	}
	if n := count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count"); n != 0 || st.Hidden != 0 {
		t.Fatalf("clean reads under churn recorded %d hidden rows (stats %+v)", n, st)
	}
}

// TestProxyPipelinedGroups: a client that sends several Sync groups before
// reading (pgconn's pipeline mode) gets every result right through the
// proxy, whether a group's read was replayed or skipped; a replayed one
// records exactly its foreign rows, and nothing is interleaved with the
// client's messages (an interleaved replay would desynchronise the
// protocol and fail the client).
func TestProxyPipelinedGroups(t *testing.T) {
	ctx := context.Background()
	_, op, _, px, dsn, stop := shadowBehindProxy(t)
	s1 := server(1)
	foreign := int64(len(ids(t, op, "SELECT id FROM rooms WHERE name = 'room 3' AND server_id <> $1", s1)))
	app := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
	if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
		t.Fatal(err)
	}
	const groups = 4
	for round := 0; round < 30; round++ {
		pl := app.PgConn().StartPipeline(ctx)
		for g := 0; g < groups; g++ {
			pl.SendQueryParams("SELECT id FROM rooms WHERE name = $1", [][]byte{[]byte("room 3")}, nil, nil, nil)
			pl.SendPipelineSync()
		}
		if err := pl.Flush(); err != nil {
			t.Fatal(err)
		}
		for g := 0; g < groups; g++ {
			res, err := pl.GetResults()
			if err != nil {
				t.Fatalf("round %d group %d: %v", round, g, err)
			}
			rr, ok := res.(*pgconn.ResultReader)
			if !ok {
				t.Fatalf("round %d group %d: got %T, want rows", round, g, res)
			}
			r := rr.Read()
			if r.Err != nil || int64(len(r.Rows)) != foreign+1 {
				t.Fatalf("round %d group %d: %d rows, %v (want %d)", round, g, len(r.Rows), r.Err, foreign+1)
			}
			if res, err = pl.GetResults(); err != nil {
				t.Fatal(err)
			}
			if _, ok := res.(*pgconn.PipelineSync); !ok {
				t.Fatalf("round %d group %d: got %T, want the sync", round, g, res)
			}
		}
		if err := pl.Close(); err != nil {
			t.Fatal(err)
		}
	}
	st := px.Stats()
	// The connection is still in step: a last (clean) read works.
	if got := ids(t, app, "SELECT id FROM rooms WHERE name = 'room 3' AND server_id = $1", s1); len(got) != 1 {
		t.Fatalf("after the pipelines the connection returns %d own rooms", len(got))
	}
	stop()
	if st.Failed != 0 || st.Replayed+st.Skipped != st.Sampled || st.Hidden != st.Replayed*foreign {
		t.Fatalf("stats %+v: want every sampled read replayed or skipped, %d hidden rows per replay", st, foreign)
	}
	if n := count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count WHERE rel = 'query'"); n != st.Hidden {
		t.Fatalf("recorded %d hidden rows, the proxy counted %d", n, st.Hidden)
	}
	t.Logf("stats %+v", st)
}

// TestProxyPassesCopyAndNotifications: COPY in both directions and
// LISTEN/NOTIFY pass through the proxy unchanged while it replays every
// read; the connection stays usable after each.
func TestProxyPassesCopyAndNotifications(t *testing.T) {
	ctx := context.Background()
	_, op, _, px, dsn, stop := shadowBehindProxy(t)
	s1, room1 := server(1), md5UUID("r1.1")
	app := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
	if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
		t.Fatal(err)
	}
	// COPY FROM into a table under row-level security is PostgreSQL's
	// error (0A000), passed on as is; into a global table it works.
	var rows [][]any
	for i := 0; i < 500; i++ {
		rows = append(rows, []any{md5UUID(fmt.Sprintf("copied %d", i)), s1, room1, "message", "copied"})
	}
	_, err := app.CopyFrom(ctx, pgx.Identifier{"memories"}, []string{"id", "server_id", "room_id", "type", "content"}, pgx.CopyFromRows(rows))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "0A000" {
		t.Fatalf("COPY FROM into a table in shadow through the proxy: %v, want PostgreSQL's 0A000", err)
	}
	var logs [][]any
	for i := 0; i < 500; i++ {
		logs = append(logs, []any{md5UUID(fmt.Sprintf("e%d", i)), s1, "copied"})
	}
	n, err := app.CopyFrom(ctx, pgx.Identifier{"logs"}, []string{"entity_id", "server_id", "body"}, pgx.CopyFromRows(logs))
	if err != nil || n != 500 {
		t.Fatalf("COPY FROM through the proxy: %d rows, %v", n, err)
	}
	if got := count(t, op, "SELECT count(*) FROM logs WHERE body = 'copied'"); got != 500 {
		t.Fatalf("%d copied rows in the table, want 500", got)
	}
	var out bytes.Buffer
	if _, err := app.PgConn().CopyTo(ctx, &out, "COPY (SELECT id FROM memories WHERE server_id = '"+s1+"' ORDER BY id) TO STDOUT"); err != nil {
		t.Fatal(err)
	}
	own := count(t, op, "SELECT count(*) FROM memories WHERE server_id = $1", s1)
	if lines := int64(strings.Count(out.String(), "\n")); lines != own {
		t.Fatalf("COPY TO through the proxy: %d lines, want %d", lines, own)
	}
	if _, err := app.Exec(ctx, "LISTEN bulkhead_proxy_test"); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Exec(ctx, "NOTIFY bulkhead_proxy_test, 'hello'"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	note, err := app.WaitForNotification(wctx)
	if err != nil || note.Channel != "bulkhead_proxy_test" || note.Payload != "hello" {
		t.Fatalf("notification through the proxy: %+v, %v", note, err)
	}
	if got := ids(t, app, "SELECT entity_id FROM logs WHERE server_id = $1 AND body = 'copied'", s1); len(got) != 500 {
		t.Fatalf("a read after COPY and NOTIFY: %d rows", len(got))
	}
	stop()
	if st := px.Stats(); st.Failed != 0 || st.Replayed == 0 || st.Hidden != 0 {
		t.Fatalf("stats %+v: want clean reads replayed, none failed, nothing hidden", st)
	}
	if v := count(t, op, "SELECT coalesce(sum(n), 0) FROM bulkhead_adopt.violation_count"); v != 0 {
		t.Fatalf("clean COPY and reads recorded %d violations", v)
	}
}

// TestProxyClosesWhatItCannotRestore: when a replay can't put the
// application's connection back as it was (here the server ends the
// backend in the middle of the replay), the proxy closes the client's
// connection instead of passing on the held ReadyForQuery, so the client
// is never told its connection is fine; the proxy goes on serving others.
// restore, the check every replay ends with, refuses a status other than
// the one the client had.
func TestProxyClosesWhatItCannotRestore(t *testing.T) {
	ctx := context.Background()
	d, op, _, px, dsn, stop := shadowBehindProxy(t)
	app := connectMode(t, dsn, pgx.QueryExecModeSimpleProtocol)
	const slow = "SELECT count(*) AS closes_what_it_cannot_restore FROM generate_series(1, 4000000)"
	read := make(chan error, 1)
	go func() {
		var n int64
		read <- app.QueryRow(ctx, slow).Scan(&n)
	}()
	// The proxy replays the read on the same backend once the server has
	// answered it, holding the client's ReadyForQuery, in a transaction of
	// its own: unlike the client's implicit one, it started before the
	// statement did.
	var killed bool
	for deadline := time.Now().Add(10 * time.Second); !killed && time.Now().Before(deadline); {
		killed = count(t, op, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE state = 'active' AND query LIKE '%closes_what_it_cannot_restore%' AND xact_start < query_start AND pid <> pg_backend_pid()`) > 0
	}
	if !killed {
		t.Fatalf("the replay was never seen running (%+v)", px.Stats())
	}
	select {
	case err := <-read:
		if err == nil {
			t.Fatal("the client's read completed after its backend was ended in the replay; want its connection closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client still waits after its backend was ended in the replay")
	}
	if st := px.Stats(); st.Replayed != 0 {
		t.Fatalf("stats %+v: a replay cut off counted as done", st)
	}
	// Another connection through the same proxy works.
	other := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
	if got := count(t, other, "SELECT 1"); got != 1 {
		t.Fatalf("a new connection through the proxy: %d", got)
	}

	// restore, on a real connection: the status it ends in must be the
	// client's.
	s := &session{px: px, fe: hijack(t, d.appDSN()).Frontend}
	if err := s.restore("BEGIN", 'I'); err == nil || !strings.Contains(err.Error(), "closing the connection") {
		t.Fatalf("restore leaving a transaction open: %v, want refused", err)
	}
	if err := s.restore("ROLLBACK", 'I'); err != nil {
		t.Fatalf("restore back to idle: %v", err)
	}
	stop()
}

// TestProxyBoundsUnauthenticatedClients: before a client has
// authenticated, the proxy holds it to PostgreSQL's limits: a message
// longer than an authentication token ends the connection at once (it is
// never read, nor its declared length allocated), and a client that
// hasn't finished start-up and authentication within AuthTimeout is
// disconnected, whether it sent nothing or stopped at the password.
// Once authenticated, a connection may be idle longer than that.
func TestProxyBoundsUnauthenticatedClients(t *testing.T) {
	d, op, p := newReviewed(t)
	toShadow(t, op, p)
	const authTimeout = 1500 * time.Millisecond
	px, dsn, stop := startProxyWith(t, d, ProxyOptions{Sample: 1, AuthTimeout: authTimeout})
	defer stop()

	// closedWithin: the proxy closes conn within limit (a read ends in
	// EOF or a reset, not in the test's own timeout).
	closedWithin := func(t *testing.T, conn net.Conn, limit time.Duration) {
		t.Helper()
		conn.SetReadDeadline(time.Now().Add(limit))
		buf := make([]byte, 4096)
		for {
			_, err := conn.Read(buf)
			var ne net.Error
			switch {
			case err == nil:
				continue // what the server sent before
			case errors.As(err, &ne) && ne.Timeout():
				t.Fatalf("the proxy kept the connection open past %s", limit)
			}
			return
		}
	}
	// startup sends a start-up message and returns once the server has
	// asked for the password.
	startup := func(t *testing.T) net.Conn {
		t.Helper()
		conn, err := net.Dial("tcp", px.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fe := pgproto3.NewFrontend(conn, conn)
		fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": appRole, "database": d.name}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		m, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := m.(*pgproto3.AuthenticationSASL); !ok {
			t.Fatalf("the server's first answer: %T, want a SASL challenge", m)
		}
		return conn
	}

	t.Run("oversized password message", func(t *testing.T) {
		conn := startup(t)
		// 'p' declaring a body of about 2 GB; nothing follows.
		if _, err := conn.Write([]byte{'p', 0x7f, 0xff, 0xff, 0xf0}); err != nil {
			t.Fatal(err)
		}
		closedWithin(t, conn, authTimeout/2)
	})
	t.Run("silent after connecting", func(t *testing.T) {
		conn, err := net.Dial("tcp", px.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		closedWithin(t, conn, authTimeout+3*time.Second)
		if time.Since(start) < authTimeout-100*time.Millisecond {
			t.Fatalf("closed after %s, before the authentication timeout", time.Since(start))
		}
	})
	t.Run("silent at the password", func(t *testing.T) {
		conn := startup(t)
		closedWithin(t, conn, authTimeout+3*time.Second)
	})
	t.Run("oversized message after authenticating", func(t *testing.T) {
		// Longer than PostgreSQL accepts from anyone (1 GB).
		hc := hijack(t, dsn)
		if _, err := hc.Conn.Write([]byte{'Q', 0x7f, 0xff, 0xff, 0xf0}); err != nil {
			t.Fatal(err)
		}
		closedWithin(t, hc.Conn, authTimeout/2)
	})
	t.Run("idle after authenticating", func(t *testing.T) {
		app := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
		time.Sleep(authTimeout + 500*time.Millisecond)
		if got := count(t, app, "SELECT 1"); got != 1 {
			t.Fatalf("a query after idling: %d", got)
		}
		// Messages longer than an authentication token pass once
		// authenticated (a 200 KB parameter).
		if got := count(t, app, "SELECT length($1::text)", strings.Repeat("x", 200_000)); got != 200_000 {
			t.Fatalf("a 200 KB parameter through the proxy: length %d", got)
		}
	})
	if _, err := NewProxy(nil, ProxyOptions{Upstream: "x", AuthTimeout: -time.Second}); err == nil {
		t.Fatal("a negative authentication timeout accepted")
	}
}

// TestReplaysRecordKeysNeverContents: a replayed read records the values
// of its first column as row keys only when that column is part of its
// table's primary key. A forgetful read whose first column is another
// tenant's message text, or an expression, is recorded as a count: no
// value of it reaches the violation table. Through the proxy (whose
// replay describes the statement to learn where the column comes from)
// and through Replayer, with the model's count from the superuser's view.
func TestReplaysRecordKeysNeverContents(t *testing.T) {
	ctx := context.Background()
	d, op, _, _, dsn, stop := shadowBehindProxy(t)
	s1 := server(1)
	foreign := count(t, op, "SELECT count(*) FROM memories WHERE content LIKE 'hello%' AND server_id <> $1", s1)
	if foreign == 0 {
		t.Fatal("the fixture has no foreign rows to find")
	}
	reads := []struct {
		sql   string
		keyed bool
	}{
		{"SELECT content, id FROM memories WHERE content LIKE 'hello%'", false},
		{"SELECT upper(id::text) FROM memories WHERE content LIKE 'hello%'", false},
		{"SELECT id, content FROM memories WHERE content LIKE 'hello%'", true},
	}
	// recorded: the count and keys recorded for sql, once the recorder has
	// flushed.
	recorded := func(t *testing.T, sql string) (n int64, keys []string) {
		t.Helper()
		fp := Fingerprint(sql)
		n = count(t, op, "SELECT coalesce(sum(weight), 0) FROM bulkhead_adopt.violation WHERE rel = 'query' AND fingerprint = $1", fp)
		return n, ids(t, op, "SELECT row_key FROM bulkhead_adopt.violation WHERE rel = 'query' AND fingerprint = $1 AND row_key IS NOT NULL", fp)
	}
	check := func(t *testing.T, how string) {
		t.Helper()
		for _, r := range reads {
			n, keys := recorded(t, r.sql)
			if n != foreign {
				t.Errorf("%s: %q recorded %d hidden rows, want %d", how, r.sql, n, foreign)
			}
			if want := 0; !r.keyed && len(keys) != want {
				t.Errorf("%s: %q recorded %d keys (%.3q…), want a count only", how, r.sql, len(keys), keys[0])
			}
			if r.keyed && int64(len(keys)) != min(foreign, 100) {
				t.Errorf("%s: %q recorded %d keys, want %d", how, r.sql, len(keys), min(foreign, 100))
			}
		}
		if leaked := count(t, op, "SELECT count(*) FROM bulkhead_adopt.violation v WHERE v.row_key IN (SELECT content FROM memories UNION ALL SELECT upper(id::text) FROM memories)"); leaked != 0 {
			t.Errorf("%s: %d message texts or computed values in the violation table", how, leaked)
		}
	}

	app := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
	if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
		t.Fatal(err)
	}
	for _, r := range reads {
		if _, err := textRows(ctx, app, r.sql); err != nil {
			t.Fatal(err)
		}
	}
	stop()
	check(t, "proxy")

	if _, err := op.Exec(ctx, "TRUNCATE bulkhead_adopt.violation"); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rp := NewReplayer(pool, 1)
	direct := mustConnect(t, d.appDSN())
	err = appTx(ctx, direct, s1, func(tx pgx.Tx) error {
		for _, r := range reads {
			if _, err := rp.Query(ctx, tx, r.sql); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	rp.Close()
	check(t, "Replayer")
}

// TestProxyBoundsWhatAReplayHolds: a sampled read whose text and
// parameters pass maxReplayBytes is answered as usual and counted sampled
// and skipped, never held for a replay (a connection could otherwise hold
// 64 statements of up to 1 GB each); a small one is replayed.
func TestProxyBoundsWhatAReplayHolds(t *testing.T) {
	_, _, _, px, dsn, _ := shadowBehindProxy(t)
	big := strings.Repeat("x", maxReplayBytes+1)
	for _, mode := range []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol} {
		app := connectMode(t, dsn, mode)
		before := px.Stats()
		if got := count(t, app, "SELECT count(*) FROM memories WHERE content = $1", big); got != 0 {
			t.Fatalf("%v: a read with a large parameter: %d", mode, got)
		}
		after := px.Stats()
		if after.Sampled-before.Sampled != 1 || after.Skipped-before.Skipped != 1 || after.Replayed != before.Replayed {
			t.Fatalf("%v: stats %+v then %+v: want the large read sampled and skipped", mode, before, after)
		}
		if got := count(t, app, "SELECT count(*) FROM memories WHERE content = $1", "hello 7"); got == 0 {
			t.Fatalf("%v: a small read: %d", mode, got)
		}
		if st := px.Stats(); st.Replayed != after.Replayed+1 {
			t.Fatalf("%v: stats %+v: want the small read replayed", mode, st)
		}
	}
}

// TestReplaysAreReadOnly: a read the eligibility check passes may still
// write through a function it can't see into (here nextval behind
// next_ticket()). The replays run read-only, so such a replay fails and is
// counted, and the sequence advances once per read the application ran,
// never for a replay; the application's transaction is writable again
// afterwards. Through the proxy (outside and inside a transaction) and
// through Replayer.
func TestReplaysAreReadOnly(t *testing.T) {
	ctx := context.Background()
	d, op, _, px, dsn, stop := shadowBehindProxy(t)
	s1, room1 := server(1), md5UUID("r1.1")
	for _, q := range []string{
		"CREATE SEQUENCE tickets",
		"CREATE FUNCTION next_ticket() RETURNS bigint LANGUAGE sql VOLATILE AS $$ SELECT nextval('tickets') $$",
		"GRANT USAGE ON SEQUENCE tickets TO " + appRole,
	} {
		if _, err := op.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	const read = "SELECT id, next_ticket() FROM memories WHERE server_id = $1 AND room_id = $2 LIMIT 1"
	if !px.eligible(read) {
		t.Fatal("the read is not eligible: the test would show nothing")
	}
	last := func() int64 { return count(t, op, "SELECT last_value FROM tickets") }

	app := connectMode(t, dsn, pgx.QueryExecModeCacheStatement)
	if _, err := app.Exec(ctx, "SET app.current_tenant_id = '"+s1+"'"); err != nil {
		t.Fatal(err)
	}
	before := px.Stats()
	if _, err := textRows(ctx, app, read, s1, room1); err != nil {
		t.Fatal(err)
	}
	err := pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
		if _, err := textRows(ctx, tx, read, s1, room1); err != nil {
			return err
		}
		// The client's transaction is writable after the replay.
		_, err := tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, type, content) VALUES (gen_random_uuid(), $1, $2, 'message', 'after a replay')", s1, room1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := last(); got != 2 {
		t.Fatalf("through the proxy: the sequence is at %d after two reads, want 2 (replays must not advance it)", got)
	}
	if st := px.Stats(); st.Failed-before.Failed != 2 || st.Replayed != before.Replayed {
		t.Fatalf("stats %+v then %+v: want both replays failed (read-only), none replayed", before, st)
	}
	// A failed replay leaves nothing in the session (the server skips the
	// rest of a failed batch, its Closes too), and the next replay on the
	// connection works.
	mid := px.Stats()
	if got := ids(t, app, "SELECT name FROM pg_prepared_statements WHERE name LIKE 'bulkhead_adopt_replay%'"); len(got) != 0 {
		t.Fatalf("the replay's prepared statements stayed in the client's session: %v", got)
	}
	if st := px.Stats(); st.Replayed != mid.Replayed+1 {
		t.Fatalf("stats %+v then %+v: want the read after the failed replays replayed", mid, st)
	}
	stop()

	pool, err := pgxpool.New(ctx, d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rp := NewReplayer(pool, 1)
	defer rp.Close()
	direct := mustConnect(t, d.appDSN())
	err = appTx(ctx, direct, s1, func(tx pgx.Tx) error {
		got, err := rp.Query(ctx, tx, read, s1, room1)
		if err != nil || len(got) != 1 {
			return fmt.Errorf("Replayer: the application's read: %v, %v", got, err)
		}
		// Its transaction goes on, writable.
		_, err = tx.Exec(ctx, "INSERT INTO memories (id, server_id, room_id, type, content) VALUES (gen_random_uuid(), $1, $2, 'message', 'after a replay')", s1, room1)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := last(); got != 3 {
		t.Fatalf("through Replayer: the sequence is at %d after three reads, want 3", got)
	}
	if rp.Failed() != 1 {
		t.Fatalf("Replayer: %d failed replays, want 1", rp.Failed())
	}
}

// TestProxyRecordsTheEntity: with memories adopted as kind private, a read
// through the proxy that forgets the owner filter is recorded under the
// caller's tenant and entity, once per replay, with exactly the rows the
// model says private hides from that entity (another entity of the same
// tenant, and a tenant without an entity, each get their own records).
func TestProxyRecordsTheEntity(t *testing.T) {
	ctx := context.Background()
	d, op, p := newReviewed(t)
	setKind(p, "memories", KindPrivate, "entity_id")
	toShadow(t, op, p)
	_, dsn, stop := startProxy(t, d, 1)
	s1, room := server(1), md5UUID("r1.1")
	m := loadEntityModel(t, op, KindPrivate)
	callers := []caller{{s1, md5UUID("e1.1")}, {s1, md5UUID("e1.2")}, {s1, ""}}
	modes := []pgx.QueryExecMode{pgx.QueryExecModeCacheStatement, pgx.QueryExecModeSimpleProtocol}
	for _, mode := range modes {
		app := connectMode(t, dsn, mode)
		for _, c := range callers {
			err := entityTx(ctx, app, c, func(tx pgx.Tx) error {
				got := ids(t, tx, "SELECT id FROM memories WHERE room_id = $1", room)
				if all := m.inRoom(room, func(memRow) bool { return true }); len(got) != len(all) {
					return fmt.Errorf("shadow read %d rows, the room has %d", len(got), len(all))
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%v %+v: %v", mode, c, err)
			}
		}
	}
	stop()
	type record struct {
		keys  []string
		total int64
	}
	got := map[caller]*record{}
	rows, err := op.Query(ctx, "SELECT tenant, entity, row_key, weight FROM bulkhead_adopt.violation WHERE rel = 'query'")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var c caller
		var k *string
		var w int64
		if err := rows.Scan(&c.tenant, &c.entity, &k, &w); err != nil {
			t.Fatal(err)
		}
		if got[c] == nil {
			got[c] = &record{}
		}
		got[c].total += w
		if k != nil {
			got[c].keys = append(got[c].keys, *k)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, c := range callers {
		hidden := m.inRoom(room, func(r memRow) bool { return !m.visible(c, r) })
		r := got[c]
		if r == nil {
			t.Errorf("%+v: nothing recorded, the model hides %d rows", c, len(hidden))
			continue
		}
		// Each replay keeps the first 100 keys, and the count.
		n := int64(len(modes))
		if r.total != n*int64(len(hidden)) || int64(len(r.keys)) != n*int64(min(100, len(hidden))) {
			t.Errorf("%+v: recorded %d rows (%d keys) in %d replays, the model hides %d", c, r.total, len(r.keys), n, len(hidden))
		}
		for _, k := range r.keys {
			if _, ok := slices.BinarySearch(hidden, k); !ok {
				t.Errorf("%+v: recorded %s, which the model shows the caller", c, k)
			}
		}
	}
	if len(got) != len(callers) {
		t.Errorf("records under %d contexts, want the %d callers'", len(got), len(callers))
	}
}
