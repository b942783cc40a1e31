package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// checked returns ctx in scope (tenant, entity) carrying acc.
func checked(t testing.TB, tenant, entity uuid.UUID, acc postgres.Access) context.Context {
	t.Helper()
	return postgres.WithAccess(as(t, tenant, entity, uuid.Nil), acc)
}

// accessOutcome runs a one-statement read (Read) and a transaction
// (InScope) in ctx and returns their errors, which must agree.
func accessOutcome(t *testing.T, db *postgres.DB, ctx context.Context) error {
	t.Helper()
	_, readErr := db.CurrentTenant(ctx)
	txErr := db.InScope(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT 1")
		return err
	})
	if errors.Is(readErr, bulkhead.ErrUnauthenticated) != errors.Is(txErr, bulkhead.ErrUnauthenticated) {
		t.Fatalf("Read and InScope disagree: %v / %v", readErr, txErr)
	}
	return txErr
}

// TestAccessCheck walks an entity's credentials through revocation and
// back: each refusal is ErrUnauthenticated on both scoped paths, and the
// rightful credential (or the same one after re-enabling) still passes.
func TestAccessCheck(t *testing.T) {
	d, demo := seeded(t)
	db := d.DB
	m := bulkhead.AsMaintenance(context.Background(), "test")
	t1, t2 := demo.T1, demo.T2
	alice := as(t, t1.Tenant.ID, t1.Alice, uuid.Nil)
	family, otherFamily, key := uuid.New(), uuid.New(), uuid.New()
	if err := db.InsertRefreshToken(alice, uuid.New(), family, []byte("h1"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := db.InsertRefreshToken(as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), uuid.New(), otherFamily, []byte("h2"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.InsertAPIKey(alice, key, "k", []byte("h3"), nil, nil); err != nil {
		t.Fatal(err)
	}
	// Keys that expire: one an hour from now, one a minute ago; and one of
	// bob's, presented for alice.
	soon, gone, bobsKey := uuid.New(), uuid.New(), uuid.New()
	later, past := time.Now().Add(time.Hour), time.Now().Add(-time.Minute)
	if _, err := db.InsertAPIKey(alice, soon, "soon", []byte("h5"), nil, &later); err != nil {
		t.Fatal(err)
	}
	if _, err := db.InsertAPIKey(alice, gone, "gone", []byte("h6"), nil, &past); err != nil {
		t.Fatal(err)
	}
	if _, err := db.InsertAPIKey(as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), bobsKey, "bob", []byte("h7"), nil, nil); err != nil {
		t.Fatal(err)
	}
	keyed := func(k uuid.UUID) context.Context {
		return checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{APIKey: k})
	}
	type c struct {
		name string
		ctx  context.Context
		ok   bool
	}
	run := func(step string, cases ...c) {
		t.Helper()
		for _, cs := range cases {
			err := accessOutcome(t, db, cs.ctx)
			switch {
			case cs.ok && err != nil:
				t.Errorf("%s: %s refused: %v", step, cs.name, err)
			case !cs.ok && !errors.Is(err, bulkhead.ErrUnauthenticated):
				t.Errorf("%s: %s: %v, want ErrUnauthenticated", step, cs.name, err)
			}
		}
	}
	sess := func(f uuid.UUID) context.Context {
		return checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{Session: f})
	}
	apikey := checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{APIKey: key})
	bob := checked(t, t2.Tenant.ID, t2.Bob, postgres.Access{})
	iat := func(at time.Time) context.Context {
		return checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{IssuedAt: at})
	}

	run("start",
		c{"alice's session", sess(family), true},
		c{"alice's API key", apikey, true},
		c{"alice's session-less token", iat(time.Now()), true},
		c{"a pre-authentication scope", postgres.WithAccess(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), postgres.Access{}), true},
		c{"an unknown session", sess(uuid.New()), false},
		c{"bob's session presented for alice", sess(otherFamily), false},
		c{"an unknown API key", keyed(uuid.New()), false},
		c{"alice's key that expires in an hour", keyed(soon), true},
		c{"alice's key that expired a minute ago", keyed(gone), false},
		c{"bob's key presented for alice", keyed(bobsKey), false},
		c{"bob's key presented by bob", checked(t, t1.Tenant.ID, t1.Bob, postgres.Access{APIKey: bobsKey}), true},
		c{"alice's key presented in T2", checked(t, t2.Tenant.ID, t1.Alice, postgres.Access{APIKey: key}), false},
		c{"an entity without a row", checked(t, t1.Tenant.ID, uuid.New(), postgres.Access{}), false},
		c{"an external entity without a row", checked(t, t1.Tenant.ID, uuid.New(), postgres.Access{ExternalEntity: true}), true},
		c{"a tenant that does not exist", checked(t, uuid.New(), uuid.Nil, postgres.Access{}), false},
	)

	// Logout: the family revoked.
	if err := db.RevokeRefreshFamily(alice, family); err != nil {
		t.Fatal(err)
	}
	run("logout", c{"the logged-out session", sess(family), false}, c{"alice's API key", apikey, true})

	// Revoke-sessions: earlier session-less tokens die, later ones and
	// fresh flows (a login) work; a session started after it works.
	before := time.Now().Add(-time.Second)
	if _, err := db.RevokeEntitySessions(m, t1.Tenant.ID, t1.Alice); err != nil {
		t.Fatal(err)
	}
	after := time.Now().Add(2 * time.Second)
	newFamily := uuid.New()
	if err := db.InsertRefreshToken(postgres.WithAccess(alice, postgres.Access{Fresh: true}), uuid.New(), newFamily, []byte("h4"), time.Now().Add(time.Hour)); err != nil {
		t.Fatalf("a login after revoke-sessions: %v", err)
	}
	run("revoke-sessions",
		c{"a token issued before", iat(before), false},
		c{"a token without iat", checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{}), false},
		c{"a token issued after", iat(after), true},
		c{"a session started after", sess(newFamily), true},
		c{"alice's API key (untouched)", apikey, true},
		c{"bob in T2", bob, true},
	)

	// Disabled entity: nothing of alice's passes, not even a fresh login;
	// a write attempted meanwhile leaves nothing.
	if err := db.SetEntityDisabled(m, t1.Tenant.ID, t1.Alice, true); err != nil {
		t.Fatal(err)
	}
	run("alice disabled",
		c{"her session", sess(newFamily), false},
		c{"her API key", apikey, false},
		c{"a fresh flow", checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{Fresh: true}), false},
		c{"her id as an external entity", checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{ExternalEntity: true}), false},
		c{"bob in T1", checked(t, t1.Tenant.ID, t1.Bob, postgres.Access{}), true},
	)
	if _, err := exec(t, db, sess(newFamily), `UPDATE bulkhead.entities SET name = 'hijacked' WHERE tenant_id = $1 AND id = $2`, t1.Tenant.ID, t1.Alice); !errors.Is(err, bulkhead.ErrUnauthenticated) {
		t.Errorf("a disabled entity's write: %v", err)
	}
	if err := db.SetEntityDisabled(m, t1.Tenant.ID, t1.Alice, false); err != nil {
		t.Fatal(err)
	}
	run("alice re-enabled", c{"her session", sess(newFamily), true}, c{"her API key", apikey, true})
	if e, err := db.Entity(alice, t1.Alice); err != nil || e.Name == "hijacked" {
		t.Errorf("the refused write changed something: %v %v", e, err)
	}

	// A disabled tenant: every credential of it, and only of it.
	if err := db.SetTenantDisabled(m, t1.Tenant.ID, true); err != nil {
		t.Fatal(err)
	}
	run("T1 disabled",
		c{"alice's session", sess(newFamily), false},
		c{"T1's pre-authentication scope", postgres.WithAccess(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), postgres.Access{}), false},
		c{"bob in T2", bob, true},
	)
	if err := db.SetTenantDisabled(m, t1.Tenant.ID, false); err != nil {
		t.Fatal(err)
	}
	run("T1 re-enabled", c{"alice's session", sess(newFamily), true})

	// The API key revoked by the operator.
	if err := db.RevokeTenantAPIKey(m, t1.Tenant.ID, key); err != nil {
		t.Fatal(err)
	}
	run("key revoked", c{"the revoked key", apikey, false}, c{"her session", sess(newFamily), true})

	// A deleted entity, and a deleted tenant.
	charlie := checked(t, t1.Tenant.ID, t1.Charlie, postgres.Access{})
	run("before delete", c{"charlie", charlie, true})
	if err := db.DeleteEntity(m, t1.Tenant.ID, t1.Charlie); err != nil {
		t.Fatal(err)
	}
	if err := db.DeleteEntity(m, t1.Tenant.ID, t1.Charlie); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("deleting a deleted entity: %v, want ErrNotFound", err)
	}
	run("charlie deleted", c{"charlie", charlie, false}, c{"alice", sess(newFamily), true})
	if _, err := db.DeleteTenant(m, t1.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	run("T1 deleted", c{"alice's session", sess(newFamily), false}, c{"bob in T2", bob, true})

	// Without an Access in the context nothing is checked (library use):
	// the deleted tenant's scope simply sees nothing.
	if n := ids(t, db, alice, `SELECT id FROM bulkhead.rooms`); len(n) != 0 {
		t.Errorf("a deleted tenant's scope sees %d rooms", len(n))
	}
}

// TestAccessControlPlaneNotFound: each operation on something that does
// not exist says so and writes nothing.
func TestAccessControlPlaneNotFound(t *testing.T) {
	d, demo := seeded(t)
	db := d.DB
	m := bulkhead.AsMaintenance(context.Background(), "test")
	t1 := demo.T1.Tenant.ID
	nobody := uuid.New()
	for name, err := range map[string]error{
		"disable a missing tenant":      db.SetTenantDisabled(m, uuid.New(), true),
		"disable a missing entity":      db.SetEntityDisabled(m, t1, nobody, true),
		"disable T2's entity in T1":     db.SetEntityDisabled(m, t1, demo.T2.Alice, true),
		"delete a missing entity":       db.DeleteEntity(m, t1, nobody),
		"revoke a missing key":          db.RevokeTenantAPIKey(m, t1, uuid.New()),
		"reset for an entity w/o login": db.SetPasswordReset(m, t1, demo.T1.Agent, []byte("h"), time.Now().Add(time.Hour)),
		"reset for a missing entity":    db.SetPasswordReset(m, t1, nobody, []byte("h"), time.Now().Add(time.Hour)),
		"revoke-sessions, missing":      func() error { _, err := db.RevokeEntitySessions(m, t1, nobody); return err }(),
		"revoke-api-keys, missing":      func() error { _, err := db.RevokeEntityAPIKeys(m, t1, nobody); return err }(),
		"list keys of a missing entity": func() error { _, err := db.EntityAPIKeys(m, t1, nobody); return err }(),
		"without the maintenance path":  db.SetTenantDisabled(context.Background(), t1, true),
	} {
		want := bulkhead.ErrNotFound
		if name == "without the maintenance path" {
			want = postgres.ErrNoMaintenance
		}
		if !errors.Is(err, want) {
			t.Errorf("%s: %v, want %v", name, err, want)
		}
	}
	// T2's Alice was not disabled by the cross-tenant attempt.
	ctx := checked(t, demo.T2.Tenant.ID, demo.T2.Alice, postgres.Access{})
	if err := accessOutcome(t, db, ctx); err != nil {
		t.Errorf("T2's Alice after T1's operator named her: %v", err)
	}
}

// TestPasswordDefinerFunctionsStayInTheirLane: auth_password_reset answers
// only in a pre-authentication context and only for a matching, unexpired
// hash; auth_password_change changes only the caller's own password, never
// while acting for someone, and only with the right key. Neither returns a
// hash; each refusal changes nothing.
func TestPasswordDefinerFunctionsStayInTheirLane(t *testing.T) {
	d, demo := seeded(t)
	t1 := demo.T1
	ctx := context.Background()
	admin := mustConnect(t, d.AdminDSN())
	const params, key = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	resetHash := []byte("0123456789abcdef0123456789abcdef")
	for _, e := range []uuid.UUID{t1.Bob, t1.Charlie} {
		if _, err := admin.Exec(ctx, `INSERT INTO bulkhead.users (tenant_id, id, email, password_hash, reset_hash, reset_expires_at) VALUES ($1, $2, $3, $4, $5, now() + interval '1 hour')
			ON CONFLICT (tenant_id, id) DO UPDATE SET password_hash = excluded.password_hash, reset_hash = excluded.reset_hash, reset_expires_at = excluded.reset_expires_at`,
			t1.Tenant.ID, e, e.String()+"@example.com", params+"$"+key, resetHash); err != nil {
			t.Fatal(err)
		}
	}
	hashOf := func(e uuid.UUID) string {
		var h string
		if err := admin.QueryRow(ctx, `SELECT password_hash FROM bulkhead.users WHERE tenant_id = $1 AND id = $2`, t1.Tenant.ID, e).Scan(&h); err != nil {
			t.Fatal(err)
		}
		return h
	}
	call := func(scope context.Context, sql string, args ...any) string {
		t.Helper()
		var out *string
		if err := d.DB.InScope(scope, func(tx pgx.Tx) error { return tx.QueryRow(scope, sql, args...).Scan(&out) }); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		if out == nil {
			return "NULL"
		}
		return *out
	}
	reset := `SELECT bulkhead.auth_password_reset($1, $2, 'new-hash')::text`
	change := `SELECT bulkhead.auth_password_change($1, 'new-hash')::text`
	for name, scope := range map[string]context.Context{
		"bob himself":              as(t, t1.Tenant.ID, t1.Bob, uuid.Nil),
		"charlie":                  as(t, t1.Tenant.ID, t1.Charlie, uuid.Nil),
		"the agent acting for bob": as(t, t1.Tenant.ID, t1.Agent, t1.Bob),
		"T2":                       as(t, demo.T2.Tenant.ID, uuid.Nil, uuid.Nil),
	} {
		if got := call(scope, reset, t1.Bob, resetHash); got != "NULL" {
			t.Errorf("reset as %s: %s, want NULL", name, got)
		}
	}
	preauth := as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil)
	if got := call(preauth, reset, t1.Bob, []byte("wrong")); got != "NULL" {
		t.Errorf("reset with a wrong hash: %s", got)
	}
	if hashOf(t1.Bob) != params+"$"+key {
		t.Fatal("a refused reset changed the password")
	}
	// Change: Charlie can't change Bob's (only his own); the agent acting
	// for Bob can't; a wrong key can't; without an entity nothing.
	for name, c := range map[string]struct {
		scope context.Context
		key   string
	}{
		"charlie with bob's key":   {as(t, t1.Tenant.ID, t1.Charlie, uuid.Nil), "wrong"},
		"the agent acting for bob": {as(t, t1.Tenant.ID, t1.Agent, t1.Bob), key},
		"bob with a wrong key":     {as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), "d3Jvbmc"},
		"a pre-auth scope":         {preauth, key},
	} {
		if got := call(c.scope, change, c.key); got != "false" {
			t.Errorf("change as %s: %s, want false", name, got)
		}
	}
	if hashOf(t1.Bob) != params+"$"+key || hashOf(t1.Charlie) != params+"$"+key {
		t.Fatal("a refused change changed a password")
	}
	// The rightful calls succeed, and touch only their own row.
	if got := call(as(t, t1.Tenant.ID, t1.Charlie, uuid.Nil), change, key); got != "true" || hashOf(t1.Charlie) != "new-hash" || hashOf(t1.Bob) != params+"$"+key {
		t.Errorf("charlie changes his own: %s", got)
	}
	if got := call(preauth, reset, t1.Bob, resetHash); got != t1.Bob.String() || hashOf(t1.Bob) != "new-hash" {
		t.Errorf("bob's reset in a pre-auth scope: %s", got)
	}
	if got := call(preauth, reset, t1.Bob, resetHash); got != "NULL" {
		t.Errorf("the same reset again: %s, want NULL", got)
	}
}

// TestAccessCheckFailsClosed: access_check_native (C) finds the indexes it
// reads through itself; without refresh_tokens' (tenant_id, family_id)
// index a request carrying a session is an error, never let through, and
// it passes again once an index is back.
func TestAccessCheckFailsClosed(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1 := demo.T1
	alice := as(t, t1.Tenant.ID, t1.Alice, uuid.Nil)
	family := uuid.New()
	if err := d.DB.InsertRefreshToken(alice, uuid.New(), family, []byte("h"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	sess := checked(t, t1.Tenant.ID, t1.Alice, postgres.Access{Session: family})
	if err := accessOutcome(t, d.DB, sess); err != nil {
		t.Fatalf("alice's session with the index: %v", err)
	}
	admin := mustConnect(t, d.AdminDSN())
	bg := context.Background()
	if _, err := admin.Exec(bg, `DROP INDEX IF EXISTS bulkhead.refresh_tokens_family_idx; DROP INDEX IF EXISTS bulkhead.refresh_tokens_family_id_idx`); err != nil {
		t.Fatal(err)
	}
	_, err := d.DB.CurrentTenant(sess)
	if err == nil || errors.Is(err, bulkhead.ErrUnauthenticated) || !strings.Contains(err.Error(), "bulkhead.access_check: refresh_tokens has no btree index on (tenant_id, family_id)") {
		t.Fatalf("a session checked without the family index: %v, want the look-up's error", err)
	}
	if _, err := admin.Exec(bg, `CREATE INDEX refresh_tokens_family_idx ON bulkhead.refresh_tokens (tenant_id, family_id)`); err != nil {
		t.Fatal(err)
	}
	if err := accessOutcome(t, d.DB, sess); err != nil {
		t.Fatalf("alice's session with the index back: %v", err)
	}
}

// TestAccessCheckExpiryBoundary: an API key is live while its expires_at
// is after the transaction's start (now()) and refused from that instant
// on: expires_at equal to now() is refused, one microsecond later is
// accepted. Both are set in the transaction that checks, so now() is
// exactly the instant compared.
func TestAccessCheckExpiryBoundary(t *testing.T) {
	d, demo := seeded(t)
	ctx := context.Background()
	t1 := demo.T1
	key := uuid.New()
	if _, err := d.DB.InsertAPIKey(as(t, t1.Tenant.ID, t1.Alice, uuid.Nil), key, "k", []byte("h"), nil, nil); err != nil {
		t.Fatal(err)
	}
	admin := mustConnect(t, d.AdminDSN())
	for _, c := range []struct {
		expires string
		live    bool
	}{
		{"now()", false},
		{"now() + interval '1 microsecond'", true},
		{"now() - interval '1 microsecond'", false},
	} {
		tx, err := admin.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "UPDATE bulkhead.api_keys SET expires_at = "+c.expires+" WHERE id = $1", key); err != nil {
			t.Fatal(err)
		}
		enter(t, tx, bulkhead.Scope{Tenant: t1.Tenant.ID, Entity: t1.Alice})
		var ok bool
		err = tx.QueryRow(ctx, "SELECT bulkhead.access_check(NULL, NULL, $1, true)", key).Scan(&ok)
		var pgErr *pgconn.PgError
		switch {
		case c.live && (err != nil || !ok):
			t.Errorf("expires_at = %s: %v, %v; want live", c.expires, ok, err)
		case !c.live && !(errors.As(err, &pgErr) && pgErr.Code == "28000"):
			t.Errorf("expires_at = %s: %v, %v; want 28000 access revoked", c.expires, ok, err)
		}
		tx.Rollback(ctx)
	}
}
