package postgres_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

const testIssuer = "https://idp.example.com/"

// countWhere counts rows on the maintenance path (every tenant).
func countWhere(t *testing.T, db *postgres.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	ctx := bulkhead.AsMaintenance(context.Background(), "test count")
	if err := db.InMaintenance(ctx, func(tx pgx.Tx) error { return tx.QueryRow(ctx, sql, args...).Scan(&n) }); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func preAuth(t *testing.T, tenant uuid.UUID) context.Context {
	return as(t, tenant, uuid.Nil, uuid.Nil)
}

// TestExternalBinding: an issuer without a fixed binding speaks only for
// the tenants that registered it; with a fixed binding the registration is
// not needed for existing entities; unregistering takes it back.
func TestExternalBinding(t *testing.T) {
	d, demo := seeded(t)
	db := d.DB
	m := bulkhead.AsMaintenance(context.Background(), "test")
	t1, t2 := demo.T1.Tenant.ID, demo.T2.Tenant.ID
	ent := uuid.New()
	if _, err := db.LinkEntity(m, t1, postgres.ExternalEntity{ID: ent, Kind: bulkhead.KindUser, Name: "ext", Issuer: testIssuer, Subject: "s1"}); err != nil {
		t.Fatal(err)
	}
	login := postgres.ExternalLogin{Issuer: testIssuer, Entity: ent, Name: "ext"}
	check := func(name string, ctx context.Context, l postgres.ExternalLogin, want postgres.ExternalStatus) {
		t.Helper()
		got, err := db.ResolveExternal(ctx, l)
		if err != nil || got != want {
			t.Errorf("%s: got %q, %v; want %q", name, got, err, want)
		}
	}
	check("T1 before registration", preAuth(t, t1), login, postgres.ExternalUnbound)
	if _, err := db.AddTenantIssuer(m, t1, testIssuer, false); err != nil {
		t.Fatal(err)
	}
	check("T1 registered", preAuth(t, t1), login, postgres.ExternalOK)
	check("T2 (registered by T1 only)", preAuth(t, t2), login, postgres.ExternalUnbound)
	bound := login
	bound.Bound = true
	check("T1 fixed binding, entity exists", preAuth(t, t1), bound, postgres.ExternalOK)
	check("T2 fixed binding, no entity there", preAuth(t, t2), bound, postgres.ExternalUnknown)
	if err := db.RemoveTenantIssuer(m, t1, testIssuer); err != nil {
		t.Fatal(err)
	}
	check("T1 after removal", preAuth(t, t1), login, postgres.ExternalUnbound)
	if err := db.RemoveTenantIssuer(m, t1, testIssuer); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("second removal: %v, want ErrNotFound", err)
	}
	if _, err := db.AddTenantIssuer(m, uuid.New(), testIssuer, true); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("add to a missing tenant: %v, want ErrNotFound", err)
	}
	// Only a pre-authentication scope may ask.
	if _, err := db.ResolveExternal(as(t, t1, demo.T1.Alice, uuid.Nil), login); !errors.Is(err, bulkhead.ErrUnauthenticated) {
		t.Errorf("with an entity in scope: %v, want ErrUnauthenticated", err)
	}
	// Not even through SQL of the runtime role with an entity in context.
	var st *string
	err := db.InScope(as(t, t1, demo.T1.Alice, uuid.Nil), func(tx pgx.Tx) error {
		return tx.QueryRow(context.Background(), `SELECT bulkhead.auth_external($1, true, $2, 'x', NULL, '0')`, testIssuer, uuid.New()).Scan(&st)
	})
	if err != nil || st != nil {
		t.Errorf("auth_external with an entity in context: %v, %v; want NULL", st, err)
	}
}

// TestExternalJIT: opt-in per tenant and issuer, audited, bounded names,
// claim updates rate-limited, deactivation.
func TestExternalJIT(t *testing.T) {
	d, demo := seeded(t)
	db := d.DB
	m := bulkhead.AsMaintenance(context.Background(), "test")
	t1, t2 := demo.T1.Tenant.ID, demo.T2.Tenant.ID
	ent := uuid.New()
	login := postgres.ExternalLogin{Issuer: testIssuer, Entity: ent, Name: "Jit User", Email: "jit@example.com", ClaimsRefresh: time.Hour}
	entities := func(tenant uuid.UUID) int {
		return countWhere(t, db, `SELECT count(*) FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2`, tenant, ent)
	}
	audits := func(action string) int {
		return countWhere(t, db, `SELECT count(*) FROM bulkhead.audit_log WHERE tenant_id = $1 AND action = $2 AND target = $3`, t1, action, ent.String())
	}
	if _, err := db.AddTenantIssuer(m, t1, testIssuer, false); err != nil {
		t.Fatal(err)
	}
	if st, err := db.ResolveExternal(preAuth(t, t1), login); err != nil || st != postgres.ExternalUnknown || entities(t1) != 0 {
		t.Fatalf("without opt-in: %q, %v, %d entities; want unknown and none", st, err, entities(t1))
	}
	if _, err := db.AddTenantIssuer(m, t1, testIssuer, true); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "   "} {
		l := login
		l.Name = bad
		if st, err := db.ResolveExternal(preAuth(t, t1), l); err != nil || st != postgres.ExternalBadName || entities(t1) != 0 {
			t.Errorf("name %q: %q, %v, %d entities; want bad_name and none", bad, st, err, entities(t1))
		}
	}
	l := login
	long := make([]byte, 10<<10)
	for i := range long {
		long[i] = 'a'
	}
	l.Name = string(long)
	if st, err := db.ResolveExternal(preAuth(t, t1), l); err != nil || st != postgres.ExternalBadName || entities(t1) != 0 {
		t.Errorf("10 kB name: %q, %v, %d entities; want bad_name and none", st, err, entities(t1))
	}
	// T2 did not opt in (or register): nothing there.
	if st, _ := db.ResolveExternal(preAuth(t, t2), login); st != postgres.ExternalUnbound || entities(t2) != 0 {
		t.Errorf("T2: %q, %d entities", st, entities(t2))
	}

	// 32 concurrent first requests on separate connections: one entity,
	// one audit record, every request usable.
	const n = 32
	var wg sync.WaitGroup
	statuses := make([]postgres.ExternalStatus, n)
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			statuses[i], errs[i] = db.ResolveExternal(preAuth(t, t1), login)
		}()
	}
	close(start)
	wg.Wait()
	created := 0
	for i := range n {
		if errs[i] != nil || !statuses[i].Usable() {
			t.Errorf("concurrent request %d: %q, %v", i, statuses[i], errs[i])
		}
		if statuses[i] == postgres.ExternalCreated {
			created++
		}
	}
	if created != 1 || entities(t1) != 1 || audits("entity.jit_create") != 1 {
		t.Errorf("concurrent first requests: %d said created, %d entities, %d audit records; want 1, 1, 1", created, entities(t1), audits("entity.jit_create"))
	}
	// The new entity is a user of T1, visible in T1's directory only.
	got, err := db.Entity(as(t, t1, demo.T1.Alice, uuid.Nil), ent)
	if err != nil || got.Kind != bulkhead.KindUser || got.Name != "Jit User" {
		t.Errorf("T1 directory: %+v, %v", got, err)
	}
	if _, err := db.Entity(as(t, t2, demo.T2.Alice, uuid.Nil), ent); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("T2 directory sees T1's new entity: %v", err)
	}

	// A changed name within ClaimsRefresh: not updated; with 0: updated, audited.
	renamed := login
	renamed.Name = "Renamed"
	if st, _ := db.ResolveExternal(preAuth(t, t1), renamed); st != postgres.ExternalOK {
		t.Errorf("rename within the refresh interval: %q, want ok (rate-limited)", st)
	}
	renamed.ClaimsRefresh = 0
	if st, _ := db.ResolveExternal(preAuth(t, t1), renamed); st != postgres.ExternalUpdated || audits("entity.claims_update") != 1 {
		t.Errorf("rename after the interval: %q, %d audits; want updated, 1", st, audits("entity.claims_update"))
	}
	if got, _ := db.Entity(as(t, t1, demo.T1.Alice, uuid.Nil), ent); got.Name != "Renamed" {
		t.Errorf("name after update: %q", got.Name)
	}
	// A bad name claim later never breaks an existing entity.
	if st, _ := db.ResolveExternal(preAuth(t, t1), postgres.ExternalLogin{Issuer: testIssuer, Entity: ent}); st != postgres.ExternalOK {
		t.Errorf("existing entity, no name claim: %q, want ok", st)
	}

	// Deactivation: refused; the entity itself cannot undo it.
	if err := db.SetEntityActive(m, t1, ent, false); err != nil {
		t.Fatal(err)
	}
	if st, _ := db.ResolveExternal(preAuth(t, t1), login); st != postgres.ExternalDeactivated {
		t.Errorf("deactivated: %q", st)
	}
	if _, err := exec(t, db, as(t, t1, ent, uuid.Nil), `UPDATE bulkhead.entities SET deactivated_at = NULL WHERE id = $1`, ent); err == nil {
		t.Error("the entity reactivated itself")
	}
	if err := db.SetEntityActive(m, t1, ent, true); err != nil {
		t.Fatal(err)
	}
	if st, _ := db.ResolveExternal(preAuth(t, t1), login); !st.Usable() {
		t.Errorf("reactivated: %q", st)
	}
	if err := db.SetEntityActive(m, t2, ent, false); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("deactivate in the wrong tenant: %v, want ErrNotFound", err)
	}
}

// TestLinkEntity: the control plane pre-links a subject with its
// deterministic id; a second link is a conflict.
func TestLinkEntity(t *testing.T) {
	d, demo := seeded(t)
	m := bulkhead.AsMaintenance(context.Background(), "test")
	id := uuid.New()
	x := postgres.ExternalEntity{ID: id, Kind: bulkhead.KindUser, Name: "Linked", Issuer: testIssuer, Subject: "sub-1", Email: "l@example.com"}
	e, err := d.DB.LinkEntity(m, demo.T1.Tenant.ID, x)
	if err != nil || e.ID != id {
		t.Fatalf("link: %+v, %v", e, err)
	}
	if _, err := d.DB.LinkEntity(m, demo.T1.Tenant.ID, x); !errors.Is(err, bulkhead.ErrConflict) {
		t.Errorf("second link: %v, want ErrConflict", err)
	}
	x.Name = ""
	if _, err := d.DB.LinkEntity(m, demo.T2.Tenant.ID, x); !errors.Is(err, bulkhead.ErrInvalid) {
		t.Errorf("empty name: %v, want ErrInvalid", err)
	}
}

// TestExternalJITLosesTheRace makes the race deterministic: another
// transaction inserts the same entity and holds it uncommitted, so the
// just-in-time insert has passed its existence check and waits on the
// primary key; when the other commits, the function must answer ok (not
// created: the name claim differs, but the claims were just set), write no
// audit record and raise no error.
func TestExternalJITLosesTheRace(t *testing.T) {
	d, demo := seeded(t)
	db := d.DB
	m := bulkhead.AsMaintenance(context.Background(), "test")
	t1 := demo.T1.Tenant.ID
	if _, err := db.AddTenantIssuer(m, t1, testIssuer, true); err != nil {
		t.Fatal(err)
	}
	ent := uuid.New()
	ctx := context.Background()
	other := mustConnect(t, d.MaintenanceDSN())
	tx, err := other.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO bulkhead.entities (tenant_id, id, kind, name, metadata) VALUES ($1, $2, 'user', 'first', jsonb_build_object('claims_at', now()))`, t1, ent); err != nil {
		t.Fatal(err)
	}
	type res struct {
		st  postgres.ExternalStatus
		err error
	}
	done := make(chan res, 1)
	go func() {
		st, err := db.ResolveExternal(preAuth(t, t1), postgres.ExternalLogin{Issuer: testIssuer, Entity: ent, Name: "second", ClaimsRefresh: time.Hour})
		done <- res{st, err}
	}()
	admin := mustConnect(t, d.AdminDSN())
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var waiting int
		if err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%auth_external%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the just-in-time insert never waited on the other transaction")
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil || r.st != postgres.ExternalOK {
		t.Fatalf("the loser of the race: %q, %v; want ok", r.st, r.err)
	}
	if n := countWhere(t, db, `SELECT count(*) FROM bulkhead.audit_log WHERE tenant_id = $1 AND action = 'entity.jit_create' AND target = $2`, t1, ent.String()); n != 0 {
		t.Errorf("the loser wrote %d creation records", n)
	}
	if n := countWhere(t, db, `SELECT count(*) FROM bulkhead.entities WHERE tenant_id = $1 AND id = $2 AND name = 'first'`, t1, ent); n != 1 {
		t.Errorf("the winner's row: %d", n)
	}
}
