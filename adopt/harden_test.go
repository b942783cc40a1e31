package adopt

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/audit"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// hardenWorld is the typed schema with uuid tenants, adopted: projects and
// tasks enforced, notes in shadow.
type hardenWorld struct {
	d       *db
	op, app *pgx.Conn
	p       *Plan
	orgs    []*typedOrg
	key     postgres.ContextKey
}

func newHardenWorld(t *testing.T) *hardenWorld {
	t.Helper()
	ctx := context.Background()
	w := &hardenWorld{d: newEmptyDB(t)}
	w.op = mustConnect(t, w.d.adminDSN())
	w.app = mustConnect(t, w.d.appDSN())
	if _, err := w.app.Exec(ctx, fmt.Sprintf(typedSchema, "uuid")); err != nil {
		t.Fatal(err)
	}
	w.orgs = seedOrgs(t, w.app, uuid.NewString(), uuid.NewString())
	p, err := Inspect(ctx, w.op, InspectOptions{TenantColumns: []string{"org_id"}, TenantSetting: "app.org", RuntimeRole: w.d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	w.p = p
	o := Options{BatchSize: 4}
	if _, err := Backfill(ctx, w.op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, w.op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Enforce(ctx, w.op, p, []string{"projects", "tasks"}, EnforceOptions{Options: o}); err != nil {
		t.Fatal(err)
	}
	w.key = contextKey(t)
	return w
}

// as runs fn on the application's connection (the tables' owner, so only
// FORCE makes the policies apply) in one transaction, with legacy in the
// application's own setting and a context signed for signed entered
// first (either "" for none).
func (w *hardenWorld) as(signed, legacy string, fn func(pgx.Tx) error) error {
	return w.asOn(w.app, signed, legacy, fn)
}

// asOn is as on conn (through the proxy, say).
func (w *hardenWorld) asOn(conn *pgx.Conn, signed, legacy string, fn func(pgx.Tx) error) error {
	ctx := context.Background()
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if signed != "" {
			sql, args, err := w.key.EnterSQL(bulkhead.Scope{Tenant: uuid.MustParse(signed)})
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, sql, args...); err != nil {
				return err
			}
		}
		if legacy != "" {
			if _, err := tx.Exec(ctx, "SELECT set_config('app.org', $1, true)", legacy); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// ids is what a query that forgets the tenant filter returns.
func (w *hardenWorld) ids(t *testing.T, signed, legacy, table string) []int64 {
	t.Helper()
	var out []int64
	err := w.as(signed, legacy, func(tx pgx.Tx) error {
		rows, err := tx.Query(context.Background(), "SELECT id FROM "+table+" ORDER BY id")
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, pgx.RowTo[int64])
		return err
	})
	if err != nil {
		t.Fatalf("%s (signed %q, legacy %q): %v", table, signed, legacy, err)
	}
	return out
}

// enforcedModel is what each tenant owns in the enforced tables.
func enforcedModel(o *typedOrg) map[string][]int64 {
	return map[string][]int64{"projects": o.projects, "tasks": o.tasks}
}

func forgeableSettings(t *testing.T, w *hardenWorld) []string {
	t.Helper()
	rep, err := audit.Run(context.Background(), w.op, audit.Options{RuntimeRole: w.p.Runtime.Name, TenantColumn: "org_id"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range rep.Findings {
		if f.Check == "BH802" {
			out = append(out, f.Object.Name)
		}
	}
	return out
}

// TestHarden: before harden, SQL on the application's connection that
// sets the legacy setting to another tenant reads that tenant's rows (the
// hole the audit reports as BH802). After it, the legacy setting opens
// nothing, a context signed for a tenant shows exactly that tenant's rows
// (also with the legacy setting naming another), the signed setting can't
// be SET, writes take the signed tenant, and the shadow recorder compares
// with the signed tenant (so shadow finds code paths that don't sign yet).
// Steps run after harden (rollback and redo of a table: backfill, shadow,
// enforce and back) keep the signed context. Undo brings the legacy
// setting back with the data unchanged.
func TestHarden(t *testing.T) {
	ctx := context.Background()
	w := newHardenWorld(t)
	a, b := w.orgs[0], w.orgs[1]
	before := checksums(t, w.op, w.p)

	// The hole: the legacy setting is the tenant, whoever sets it.
	for _, org := range w.orgs {
		for table, want := range enforcedModel(org) {
			if got := w.ids(t, "", org.id, table); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("before harden, %s with the legacy setting %s: %v, want %v", table, org.id, got, want)
			}
		}
	}
	// bulkhead_adopt.strict, which notes' shadow policy reads, can only
	// close the shadow switch (a client forging it hides rows from itself).
	if got := forgeableSettings(t, w); fmt.Sprint(got) != "[app.org bulkhead_adopt.strict]" {
		t.Errorf("audit before harden: forgeable settings %v, want app.org and bulkhead_adopt.strict", got)
	}
	if mode, err := ContextMode(ctx, w.op, w.p); err != nil || mode != ContextLegacy {
		t.Fatalf("mode before harden: %q, %v", mode, err)
	}

	// A proxy started before harden, in legacy mode, keeps serving after.
	_, proxyDSN, stopProxy := startProxy(t, w.d, 1)

	changed, err := Harden(ctx, w.op, w.p, w.key, HardenOptions{})
	if err != nil || !changed {
		t.Fatalf("harden: %v, %v", changed, err)
	}
	checkHardened(t, w)
	checkReplaysRecordSigned(t, w, proxyDSN, stopProxy)
	if got := forgeableSettings(t, w); fmt.Sprint(got) != "[bulkhead_adopt.strict]" {
		t.Errorf("audit after harden: forgeable settings %v, want only bulkhead_adopt.strict", got)
	}
	if changed, err := Harden(ctx, w.op, w.p, w.key, HardenOptions{}); err != nil || changed {
		t.Errorf("harden again: %v, %v, want no change", changed, err)
	}

	// Writes take the signed tenant; another tenant's row is refused.
	err = w.as(a.id, b.id, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO projects (id, name) VALUES (900, 'new')")
		return err
	})
	if err != nil {
		t.Fatalf("insert with a signed context: %v", err)
	}
	var owner string
	if err := w.op.QueryRow(ctx, "SELECT org_id::text FROM projects WHERE id = 900").Scan(&owner); err != nil || owner != a.id {
		t.Errorf("the new project's tenant: %q, %v, want the signed %s (not the legacy %s)", owner, err, a.id, b.id)
	}
	err = w.as(a.id, "", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO projects VALUES (901, $1, 'theirs')", b.id)
		return err
	})
	if sqlState(err) != "42501" {
		t.Errorf("insert of another tenant's project with a signed context: %v, want 42501", err)
	}
	if _, err := w.op.Exec(ctx, "DELETE FROM projects WHERE id = 900"); err != nil {
		t.Fatal(err)
	}

	// Shadow (notes) compares with the signed tenant: a write naming
	// another tenant in a signed context, and a write from code that only
	// sets the legacy setting, are both recorded.
	checkShadowRecordsSigned(t, w, 0)

	// Rollback and redo of notes after harden keep the signed context: the
	// state helpers backfill reinstalls, the triggers shadow and rollback
	// write.
	o := Options{BatchSize: 4}
	if _, err := Rollback(ctx, w.op, w.p, []string{"notes"}, PhaseOriginal, o); err != nil {
		t.Fatal(err)
	}
	if _, err := Backfill(ctx, w.op, w.p, []string{"notes"}, o); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, w.op, w.p, []string{"notes"}, o); err != nil {
		t.Fatal(err)
	}
	checkHardened(t, w)
	checkShadowRecordsSigned(t, w, 2)
	if err := Enforce(ctx, w.op, w.p, []string{"notes"}, EnforceOptions{Options: o, Force: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := Rollback(ctx, w.op, w.p, []string{"notes"}, PhaseShadow, o); err != nil {
		t.Fatal(err)
	}
	checkShadowRecordsSigned(t, w, 4)
	if _, err := w.op.Exec(ctx, "DELETE FROM notes WHERE id >= 900"); err != nil {
		t.Fatal(err)
	}

	changed, err = Unharden(ctx, w.op, w.p, Options{})
	if err != nil || !changed {
		t.Fatalf("harden --undo: %v, %v", changed, err)
	}
	for _, org := range w.orgs {
		for table, want := range enforcedModel(org) {
			if got := w.ids(t, "", org.id, table); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("after undo, %s with the legacy setting %s: %v, want %v", table, org.id, got, want)
			}
		}
	}
	if mode, err := ContextMode(ctx, w.op, w.p); err != nil || mode != ContextLegacy {
		t.Errorf("mode after undo: %q, %v", mode, err)
	}
	if s := diffMaps(before, checksums(t, w.op, w.p)); s != "" {
		t.Errorf("harden and undo changed data:\n%s", s)
	}
	if changed, err := Unharden(ctx, w.op, w.p, Options{}); err != nil || changed {
		t.Errorf("undo again: %v, %v, want no change", changed, err)
	}
}

// checkHardened: the legacy setting opens nothing in the enforced tables,
// a signed context shows exactly its tenant's rows whatever the legacy
// setting says, and the signed setting can't be SET.
func checkHardened(t *testing.T, w *hardenWorld) {
	t.Helper()
	if mode, err := ContextMode(context.Background(), w.op, w.p); err != nil || mode != ContextSigned {
		t.Fatalf("mode: %q, %v, want signed", mode, err)
	}
	a, b := w.orgs[0], w.orgs[1]
	for _, org := range w.orgs {
		for table, want := range enforcedModel(org) {
			if got := w.ids(t, "", org.id, table); len(got) != 0 {
				t.Errorf("%s with only the legacy setting %s: %v, want nothing", table, org.id, got)
			}
			if got := w.ids(t, org.id, "", table); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s signed for %s: %v, want exactly its own %v", table, org.id, got, want)
			}
		}
	}
	if got := w.ids(t, a.id, b.id, "projects"); fmt.Sprint(got) != fmt.Sprint(a.projects) {
		t.Errorf("projects signed for a, legacy naming b: %v, want a's %v", got, a.projects)
	}
	err := w.as("", "", func(tx pgx.Tx) error {
		_, err := tx.Exec(context.Background(), "SELECT set_config($1, $2, true)", SignedTenantSetting, b.id)
		return err
	})
	if sqlState(err) != "42501" {
		t.Errorf("SET %s by the application: %v, want 42501", SignedTenantSetting, err)
	}
}

// checkShadowRecordsSigned writes two notes in shadow, one naming another
// tenant in a's signed context and one with only the legacy setting, and
// checks that the recorder saw exactly those two (after prior earlier
// records), each with the tenant in the signed context.
func checkShadowRecordsSigned(t *testing.T, w *hardenWorld, prior int) {
	t.Helper()
	ctx := context.Background()
	a, b := w.orgs[0], w.orgs[1]
	id := int64(900 + prior)
	err := w.as(a.id, "", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO notes (id, project_id, org_id, body) VALUES ($1, $2, $3, 'x')", id, b.projects[0], b.id)
		return err
	})
	if err != nil {
		t.Fatalf("shadow insert naming another tenant: %v", err)
	}
	err = w.as("", a.id, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO notes (id, project_id, org_id, body) VALUES ($1, $2, $3, 'x')", id+1, a.projects[0], a.id)
		return err
	})
	if err != nil {
		t.Fatalf("shadow insert with only the legacy setting: %v", err)
	}
	rows, err := w.op.Query(ctx, "SELECT tenant || '/' || row_tenant || '/' || row_key FROM "+StateSchema+".violation WHERE rel = $1 ORDER BY row_key::bigint", w.p.Schema+".notes")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	want := []string{fmt.Sprintf("%s/%s/%d", a.id, b.id, id), fmt.Sprintf("/%s/%d", a.id, id+1)}
	if len(got) != prior+2 || fmt.Sprint(got[prior:]) != fmt.Sprint(want) {
		t.Errorf("shadow records: %v, want %d earlier then %v", got, prior, want)
	}
}

// checkReplaysRecordSigned reads notes (in shadow) forgetting the tenant
// filter, signed for a with the legacy setting naming b, through a
// Replayer and through the proxy behind proxyDSN (started before harden),
// and checks each recorded exactly the model's hidden rows, b's notes,
// under the signed tenant a: replays record the tenant the policies read,
// not the legacy setting the application may still set.
func checkReplaysRecordSigned(t *testing.T, w *hardenWorld, proxyDSN string, stopProxy func()) {
	t.Helper()
	ctx := context.Background()
	a, b := w.orgs[0], w.orgs[1]
	var want []string
	for _, id := range b.notes {
		want = append(want, fmt.Sprintf("%s/%d", a.id, id))
	}
	pool, err := pgxpool.New(ctx, w.d.adminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	rp := NewReplayer(pool, 1)
	const direct, proxied = "SELECT id FROM notes ORDER BY id", "SELECT id FROM notes WHERE id > 0 ORDER BY id"
	if err := w.as(a.id, b.id, func(tx pgx.Tx) error {
		_, err := rp.Query(ctx, tx, direct)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	rp.Close()
	conn := mustConnect(t, proxyDSN)
	err = w.asOn(conn, a.id, b.id, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, proxied)
		if err != nil {
			return err
		}
		rows.Close()
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	stopProxy() // flushes its records
	for _, sql := range []string{direct, proxied} {
		rows, err := w.op.Query(ctx, "SELECT coalesce(tenant, '') || '/' || row_key FROM "+StateSchema+".violation WHERE rel = 'query' AND fingerprint = $1 ORDER BY row_key::bigint", Fingerprint(sql))
		if err != nil {
			t.Fatal(err)
		}
		got, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("replay of %q signed for a, legacy b: recorded %v, want b's notes under a: %v", sql, got, want)
		}
	}
}

// TestHardenRefuses: a plan whose tenant isn't a uuid, no key, and a key
// the server doesn't verify with are refused, and nothing changes: the
// legacy setting still works, no extension was created.
func TestHardenRefuses(t *testing.T) {
	ctx := context.Background()
	w := newHardenWorld(t)
	var other [32]byte
	rand.Read(other[:])
	wrong, err := postgres.NewContextKey(other[:])
	if err != nil {
		t.Fatal(err)
	}
	text := *w.p
	text.TenantType = "text"
	for _, tc := range []struct {
		name string
		p    *Plan
		key  postgres.ContextKey
		want error
	}{
		{"text tenant", &text, w.key, ErrPlan},
		{"no key", w.p, postgres.ContextKey{}, ErrContextModule},
		{"another key", w.p, wrong, ErrContextModule},
	} {
		changed, err := Harden(ctx, w.op, tc.p, tc.key, HardenOptions{})
		if changed || !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, %v, want %v", tc.name, changed, err, tc.want)
		}
	}
	if mode, err := ContextMode(ctx, w.op, w.p); err != nil || mode != ContextLegacy {
		t.Errorf("mode after refusals: %q, %v", mode, err)
	}
	a := w.orgs[0]
	if got := w.ids(t, "", a.id, "projects"); fmt.Sprint(got) != fmt.Sprint(a.projects) {
		t.Errorf("projects with the legacy setting after refusals: %v, want %v", got, a.projects)
	}
	var ext bool
	if err := w.op.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'bulkhead_context')").Scan(&ext); err != nil || ext {
		t.Errorf("extension after refusals: %v, %v, want none", ext, err)
	}
}
