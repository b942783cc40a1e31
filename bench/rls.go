package bench

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Config sizes the RLS benchmark.
type Config struct {
	Tenants  int // default 1000
	Memories int // total, spread over 10 rooms per tenant; default 1,000,000
	BigRoom  int // members of the room for the participant-check comparison; default 1000
	Ops      int // measured operations per case and database; default 3000
	// PGBenchRounds rounds of the pgbench cross-check of the point read
	// (default 3; negative: none), PGBenchSeconds per side and round
	// (default 4).
	PGBenchRounds, PGBenchSeconds int
	// PinPostgres is the CPU that PostgreSQL's backends run on while the
	// operations are measured (the postmaster is pinned after the data
	// is generated; backends inherit it); negative leaves the scheduler
	// free. Two backends running the same query on the same data
	// measured up to 14 % apart when the scheduler placed them (the A/A
	// control), within 5 % when pinned. `bulkhead bench rls` pins to the
	// machine's last CPU.
	PinPostgres int
	Progress    io.Writer // progress lines; nil discards them
}

func (c *Config) defaults() {
	if c.Tenants <= 0 {
		c.Tenants = 1000
	}
	if c.Memories <= 0 {
		c.Memories = 1_000_000
	}
	if c.BigRoom <= 0 {
		c.BigRoom = 1000
	}
	if c.Ops <= 0 {
		c.Ops = 3000
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.PGBenchRounds == 0 {
		c.PGBenchRounds = 3
	}
	if c.PGBenchSeconds <= 0 {
		c.PGBenchSeconds = 4
	}
}

// Case is one operation measured four ways on one database: under the
// policies, as a role that bypasses them (the baseline), as that role with
// the application's checks in the query instead, and the baseline again
// through a pool of its own (AA, the harness's control: its ratio to the
// baseline shows the bias and noise that any other ratio of the same run
// carries).
type Case struct {
	Name                string
	RLS, Plain, App, AA time.Duration // medians
	RLSP95, PlainP95    time.Duration
}

// AARatio is the A/A control: the baseline measured twice, through two
// pools, over itself. Away from 1 it is the harness, not the policies.
func (c Case) AARatio() float64 { return float64(c.AA) / float64(c.Plain) }

// Ratio is the RLS median over the baseline median (row-level security
// bypassed, WHERE tenant_id only).
func (c Case) Ratio() float64 { return float64(c.RLS) / float64(c.Plain) }

// AppRatio is the RLS median over the median of the same operation with
// the entity checks written into the query instead (policies removed).
func (c Case) AppRatio() float64 { return float64(c.RLS) / float64(c.App) }

// Result is one run.
type Result struct {
	Config     Config
	PGVersion  string
	Setup      time.Duration
	Rows       map[string]int64 // rows per table in the dataset
	Cases      []Case
	RoundTrips []RoundTrip
	Context    ContextCost
	PGBench    *PGBench // nil when not run
	// In the big room, with RLS: one indexed EXISTS vs loading every participant.
	ParticipantCheck, LoadAllParticipants time.Duration
}

// RoundTrip is the measured number of network round trips of an operation.
type RoundTrip struct {
	Name string
	N    int64
}

type sample struct{ tenant, room, member, memory uuid.UUID }

// The point read ($1 tenant, $2 memory) and the membership check an
// application writes into its queries without RLS ($1 tenant, %s the room
// column or parameter, $3 the entity): the harness and the pgbench
// cross-check run the same text.
const (
	pointRead   = `SELECT content FROM bulkhead.memories m WHERE m.tenant_id = $1 AND m.id = $2`
	memberCheck = `EXISTS (SELECT 1 FROM bulkhead.participants p WHERE p.tenant_id = $1 AND p.room_id = %s AND p.entity_id = $3)`
)

// RunRLS builds the dataset on a private cluster and measures every case.
func RunRLS(ctx context.Context, cfg Config) (*Result, error) {
	cfg.defaults()
	res := &Result{Config: cfg, Rows: map[string]int64{}}
	start := time.Now()
	env, err := setup(ctx, cfg, res)
	if err != nil {
		return nil, err
	}
	defer env.close()
	if err := env.references(ctx, cfg.Progress); err != nil {
		return nil, err
	}
	cl, creds, samples, big := env.cl, env.creds, env.samples, env.big
	const withRLS, plain = "bench_rls", "bench_plain"
	res.Setup = time.Since(start)
	if err := pinPostgres(cl.PID(), cfg.PinPostgres, cfg.Progress); err != nil {
		return nil, err
	}

	var trips atomic.Int64
	// The baseline sides read the same database as the RLS side, as a
	// role that bypasses row-level security (baselineRole): the same
	// pages, indexes and statistics, the policies the only difference.
	// On a copy of the database (as before 2026-12-07) every RLS sample
	// read pages the previous side had not touched while the baseline
	// sides mostly followed one another on theirs.
	baselineDSN, err := env.baselineRole(ctx, withRLS)
	if err != nil {
		return nil, err
	}
	open := func(dsn string) (*postgres.DB, error) {
		return postgres.Open(ctx, postgres.Config{AppDSN: dsn, ContextKey: env.ctxKey, MaxConns: 2, Dial: CountingDial(&trips)})
	}
	// One pool per side, never shared: a side that ran on the connection
	// the previous sample had just used measured 15-30 % faster than one
	// whose backend had been idle (an A/A run, both sides on the copy
	// without policies through one shared pool, gave 1.23-1.29 on three
	// of five operations). The A/A side is that control, kept in every
	// run: the baseline's query through a pool of its own.
	var pools [4]*postgres.DB
	for i, dsn := range []string{cl.DSN(postgres.Runtime, creds.Runtime, withRLS), baselineDSN, baselineDSN, baselineDSN} {
		if pools[i], err = open(dsn); err != nil {
			return nil, err
		}
		defer pools[i].Close()
	}
	dbRLS, dbPlain, dbApp, dbAA := pools[0], pools[1], pools[2], pools[3]

	scoped := func(s sample) context.Context {
		c, _ := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: s.tenant, Entity: s.member})
		return c
	}
	// Each op runs as the sample's member. app: the query carries the
	// entity checks an application would write without RLS (run as the
	// role that bypasses the policies).
	member := memberCheck
	readOne := func(db *postgres.DB, s sample, sql string, args ...any) error {
		return db.Read(scoped(s), func(rows pgx.Rows) error {
			n := 0
			for rows.Next() {
				n++
			}
			if err := rows.Err(); err != nil {
				return err
			}
			if n == 0 {
				return fmt.Errorf("no row")
			}
			return nil
		}, sql, args...)
	}
	cases := []struct {
		name string
		op   func(db *postgres.DB, s sample, app bool) error
	}{
		{"directory read (layer 1 only)", func(db *postgres.DB, s sample, app bool) error {
			return readOne(db, s, `SELECT name FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2`, s.tenant, s.member)
		}},
		{"point read (memory by id)", func(db *postgres.DB, s sample, app bool) error {
			q := pointRead
			if app {
				return readOne(db, s, q+" AND "+fmt.Sprintf(member, "m.room_id"), s.tenant, s.memory, s.member)
			}
			return readOne(db, s, q, s.tenant, s.memory)
		}},
		{"room history page (50)", func(db *postgres.DB, s sample, app bool) error {
			q := `SELECT id, content, created_at FROM bulkhead.memories WHERE tenant_id = $1 AND room_id = $2 %s ORDER BY created_at DESC, id DESC LIMIT 50`
			if app {
				return readOne(db, s, fmt.Sprintf(q, "AND "+fmt.Sprintf(member, "$2")), s.tenant, s.room, s.member)
			}
			return readOne(db, s, fmt.Sprintf(q, ""), s.tenant, s.room)
		}},
		{"participant check", func(db *postgres.DB, s sample, app bool) error {
			// The caller asks about itself, so the application check is the query.
			ok, err := db.IsRoomParticipant(scoped(s), s.room, s.member)
			if err == nil && !ok {
				err = fmt.Errorf("member not found")
			}
			return err
		}},
		{"append memory", func(db *postgres.DB, s sample, app bool) error {
			if !app {
				_, err := db.AppendMemory(scoped(s), postgres.NewMemory{RoomID: s.room, Content: "benchmark message"})
				return err
			}
			ctx := scoped(s)
			return db.InScope(ctx, func(tx pgx.Tx) error {
				id, _ := uuid.NewV7()
				ct, err := tx.Exec(ctx, `INSERT INTO bulkhead.memories (tenant_id, id, room_id, author_id, content)
					SELECT $1, $4, $2, $3, 'benchmark message' WHERE `+fmt.Sprintf(member, "$2"), s.tenant, s.room, s.member, id)
				if err == nil && ct.RowsAffected() != 1 {
					err = fmt.Errorf("not a participant")
				}
				return err
			})
		}},
	}
	type side struct {
		db  *postgres.DB
		app bool
		got []time.Duration
	}
	rnd := mrand.New(mrand.NewPCG(1, 2))
	for _, c := range cases {
		fmt.Fprintf(cfg.Progress, "measuring %s\n", c.name)
		sides := []*side{{db: dbRLS}, {db: dbPlain}, {db: dbApp, app: true}, {db: dbAA}}
		for _, sd := range sides { // warm up
			for range 200 {
				if err := c.op(sd.db, samples[rnd.IntN(len(samples))], sd.app); err != nil {
					return nil, fmt.Errorf("%s: %w", c.name, err)
				}
			}
		}
		// Paired and interleaved: every sample runs on all four sides, in
		// an order drawn at random for each sample, so drift hits every
		// side alike and so does whatever one operation leaves behind for
		// the next (the row it read, a backend it woke). A rotating order
		// did not: each side then mostly followed the same other side, and
		// two sides running the same query differed by up to 20 %.
		for range cfg.Ops {
			s := samples[rnd.IntN(len(samples))]
			for _, k := range rnd.Perm(len(sides)) {
				sd := sides[k]
				t0 := time.Now()
				if err := c.op(sd.db, s, sd.app); err != nil {
					return nil, fmt.Errorf("%s: %w", c.name, err)
				}
				sd.got = append(sd.got, time.Since(t0))
			}
		}
		res.Cases = append(res.Cases, Case{Name: c.name, RLS: pct(sides[0].got, 50), Plain: pct(sides[1].got, 50), App: pct(sides[2].got, 50),
			AA: pct(sides[3].got, 50), RLSP95: pct(sides[0].got, 95), PlainP95: pct(sides[1].got, 95)})
	}

	// Round trips, counted on the wire.
	s := samples[0]
	for _, rt := range []struct {
		name string
		f    func() error
	}{
		{"Read: one statement (point read, history page, participant check)", func() error {
			_, err := dbRLS.IsRoomParticipant(scoped(s), s.room, s.member)
			return err
		}},
		{"InScope: one statement + commit (append)", func() error {
			_, err := dbRLS.AppendMemory(scoped(s), postgres.NewMemory{RoomID: s.room, Content: "round trip"})
			return err
		}},
	} {
		if err := rt.f(); err != nil {
			return nil, err
		}
		before := trips.Load()
		if err := rt.f(); err != nil {
			return nil, err
		}
		res.RoundTrips = append(res.RoundTrips, RoundTrip{rt.name, trips.Load() - before})
	}

	fmt.Fprintln(cfg.Progress, "measuring the context statement")
	if res.Context, err = measureContext(ctx, cl, cl.DSN(postgres.Runtime, creds.Runtime, plain), plain,
		cl.DSN(postgres.Runtime, creds.Runtime, withRLS), cl.DSN(postgres.Runtime, creds.Runtime, oldContextDB), env.ctxKey, samples, cfg.Ops); err != nil {
		return nil, err
	}

	if cfg.PGBenchRounds > 0 {
		fmt.Fprintln(cfg.Progress, "cross-checking the point read with pgbench")
		if res.PGBench, err = pgbenchPointRead(ctx, env, withRLS, baselineDSN, cfg.PGBenchRounds, cfg.PGBenchSeconds); err != nil {
			return nil, err
		}
	}

	// Participant check vs loading all participants of the big room.
	fmt.Fprintf(cfg.Progress, "participant check vs loading %d participants\n", cfg.BigRoom)
	var check, load []time.Duration
	for i := range 400 {
		t0 := time.Now()
		ok, err := dbRLS.IsRoomParticipant(scoped(big), big.room, big.member)
		if err != nil || !ok {
			return nil, fmt.Errorf("big room check: %v %v", ok, err)
		}
		if i >= 50 {
			check = append(check, time.Since(t0))
		}
		t0 = time.Now()
		// A naive caller loads every page and scans it.
		total, found, after := 0, false, ""
		for {
			ps, next, err := dbRLS.ListParticipants(scoped(big), big.room, postgres.Page{Limit: postgres.MaxPageSize, After: after})
			if err != nil {
				return nil, err
			}
			for _, p := range ps {
				found = found || p.EntityID == big.member
			}
			total += len(ps)
			if next == "" {
				break
			}
			after = next
		}
		if !found {
			return nil, fmt.Errorf("big room: member not among the loaded participants")
		}
		if total < cfg.BigRoom {
			return nil, fmt.Errorf("big room: loaded %d participants, want %d", total, cfg.BigRoom)
		}
		if i >= 50 {
			load = append(load, time.Since(t0))
		}
	}
	res.ParticipantCheck, res.LoadAllParticipants = pct(check, 50), pct(load, 50)
	return res, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)]
}

func execAll(ctx context.Context, dsn string, stmts []string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	})
}

// CountingDial returns a dial function whose connections count round trips
// into n: a write that follows a read starts a new one.
func CountingDial(n *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		rc := &rtConn{Conn: c, n: n}
		rc.reading.Store(true)
		return rc, nil
	}
}

// rtConn counts round trips: a write after a read starts a new one. pgx
// may read on a background goroutine while it writes, so the flag is atomic.
type rtConn struct {
	net.Conn
	n       *atomic.Int64
	reading atomic.Bool
}

func (c *rtConn) Write(b []byte) (int, error) {
	if c.reading.Swap(false) {
		c.n.Add(1)
	}
	return c.Conn.Write(b)
}

func (c *rtConn) Read(b []byte) (int, error) {
	c.reading.Store(true)
	return c.Conn.Read(b)
}

// benchEnv is a private cluster holding the generated dataset in
// bench_rls (and, for bench rls, the reference copies of references).
type benchEnv struct {
	dir     string
	cl      *pgcluster.Cluster
	creds   postgres.Credentials
	ctxKey  postgres.ContextKey
	samples []sample
	big     sample
}

func (e *benchEnv) close() {
	if e.cl != nil {
		e.cl.Stop()
	}
	os.RemoveAll(e.dir)
}

// setup starts the cluster and generates the dataset in bench_rls (bench
// rls adds its reference copies with references).
func setup(ctx context.Context, cfg Config, res *Result) (_ *benchEnv, err error) {
	e, err := newCluster(ctx, cfg.Progress, map[string]string{"shared_buffers": "1GB", "max_wal_size": "8GB", "checkpoint_timeout": "30min"})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	if err := e.migrated(ctx, "bench_rls"); err != nil {
		return nil, err
	}
	admin, err := pgx.Connect(ctx, e.cl.SuperuserDSN("bench_rls"))
	if err != nil {
		return nil, err
	}
	admin.QueryRow(ctx, "SHOW server_version").Scan(&res.PGVersion)
	if err := generate(ctx, admin, cfg, res); err != nil {
		admin.Close(ctx)
		return nil, err
	}
	samples, big, err := loadSamples(ctx, admin)
	admin.Close(ctx)
	if err != nil {
		return nil, err
	}
	e.samples, e.big = samples, big
	return e, nil
}

// references makes bench rls's two reference copies of the dataset:
// bench_plain, its policies removed (for the context comparison), and
// oldContextDB, which keeps the policies but reads the context from plain
// settings of another prefix, as bulkhead did before the signed context:
// the same-run reference for what enter() and the native membership
// look-up together change under RLS.
func (e *benchEnv) references(ctx context.Context, progress io.Writer) error {
	cl, creds := e.cl, e.creds
	fmt.Fprintln(progress, "copying the dataset for the baseline (policies removed)")
	if err := e.copyDataset(ctx, "bench_plain"); err != nil {
		return err
	}
	down, err := rls.Remove(postgres.RLSConfig, postgres.Tables)
	if err != nil {
		return err
	}
	if err := execAll(ctx, cl.DSN(postgres.Owner, creds.Owner, "bench_plain"), down); err != nil {
		return err
	}

	fmt.Fprintln(progress, "copying the dataset for the old-context reference")
	if err := e.copyDataset(ctx, oldContextDB); err != nil {
		return err
	}
	// Its membership helper is the PL/pgSQL one (the native one reads
	// bulkhead's settings only): the reference is bulkhead before both the
	// signed context and the native membership look-up.
	oldCfg := postgres.RLSConfig
	oldCfg.TenantSetting, oldCfg.EntitySetting, oldCfg.ActingForSetting = oldTenant, oldEntity, oldActingFor
	oldCfg.NativeMembership = false
	fns, err := rls.ContextFunctions(oldCfg)
	if err != nil {
		return err
	}
	helpers, err := rls.Generate(oldCfg, nil)
	if err != nil {
		return err
	}
	if err := execAll(ctx, cl.DSN(postgres.Owner, creds.Owner, oldContextDB), fns); err != nil {
		return err
	}
	// As the migrations run them: the definer helpers change owner.
	return execAll(ctx, cl.SuperuserDSN(oldContextDB), helpers)
}

// copyDataset creates database name as a copy of bench_rls, with the
// privileges PrepareDatabase sets.
func (e *benchEnv) copyDataset(ctx context.Context, name string) error {
	root, err := pgx.Connect(ctx, e.cl.SuperuserDSN("postgres"))
	if err != nil {
		return err
	}
	_, err = root.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s TEMPLATE bench_rls OWNER %s", name, postgres.Owner))
	root.Close(ctx)
	if err != nil {
		return fmt.Errorf("copy the dataset to %s: %w", name, err)
	}
	return postgres.PrepareDatabase(ctx, e.cl.SuperuserDSN("postgres"), name)
}

// newCluster starts a throwaway cluster (fsync off) with random role
// passwords, bootstrapped.
func newCluster(ctx context.Context, progress io.Writer, settings map[string]string) (*benchEnv, error) {
	dir, err := os.MkdirTemp("", "bhbench")
	if err != nil {
		return nil, err
	}
	e := &benchEnv{dir: dir}
	os.Chmod(dir, 0o755) // PostgreSQL runs as another user under root
	fmt.Fprintln(progress, "starting a private PostgreSQL cluster")
	if e.cl, err = pgcluster.Start(ctx, pgcluster.Config{DataDir: dir, Ephemeral: true, Settings: settings}); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	e.creds = postgres.Credentials{Owner: rand.Text(), Runtime: rand.Text(), Maintenance: rand.Text(), KeyService: rand.Text()}
	raw, err := e.cl.ContextKey()
	if err == nil {
		e.ctxKey, err = postgres.NewContextKey(raw)
	}
	if err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// baselineRole creates a login role that has the runtime role's
// privileges and bypasses row-level security, and returns its DSN for
// database: the bench's "policies off" sides on the same data. It checks
// both sides before any measurement: without a context the baseline role
// reads memories and the runtime role reads none. Otherwise the baseline
// would silently measure the policies too (a member reads its own rows
// under them as well).
func (e *benchEnv) baselineRole(ctx context.Context, database string) (string, error) {
	const role = "bench_baseline"
	password := rand.Text()
	conn, err := pgx.Connect(ctx, e.cl.SuperuserDSN(database))
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN BYPASSRLS INHERIT IN ROLE %s PASSWORD '%s'`, role, postgres.Runtime, password)); err != nil {
		return "", fmt.Errorf("create the baseline role: %w", err)
	}
	dsn := e.cl.DSN(role, password, database)
	for _, side := range []struct {
		dsn  string
		want bool
	}{{dsn, true}, {e.cl.DSN(postgres.Runtime, e.creds.Runtime, database), false}} {
		c, err := pgx.Connect(ctx, side.dsn)
		if err != nil {
			return "", err
		}
		var reads bool
		err = c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.memories)`).Scan(&reads)
		c.Close(ctx)
		if err != nil {
			return "", fmt.Errorf("check %s: %w", c.Config().User, err)
		}
		if reads != side.want {
			return "", fmt.Errorf("%s reads memories without a context: %v, want %v (the baseline must bypass row-level security, the RLS side must not)", c.Config().User, reads, side.want)
		}
	}
	return dsn, nil
}

// migrated creates database name with bulkhead's roles and schema.
func (e *benchEnv) migrated(ctx context.Context, name string) error {
	if err := postgres.Bootstrap(ctx, e.cl.SuperuserDSN("postgres"), name, e.creds, true); err != nil {
		return err
	}
	m, err := postgres.NewMigrator(e.cl.DSN(postgres.Owner, e.creds.Owner, name), nil)
	if err != nil {
		return err
	}
	defer m.Close()
	m.UseAdmin(e.cl.SuperuserDSN("postgres"))
	_, err = m.Up(ctx)
	return err
}
