package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TestAuthLookupsStayInTheirTenantAndRow checks the pre-authentication
// SECURITY DEFINER look-ups: the right row, in the scope's tenant only.
func TestAuthLookupsStayInTheirTenantAndRow(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1, t2 := demo.T1, demo.T2
	bobEmail := fmt.Sprintf("Bob@%s.example", t1.Tenant.ID)
	admin := mustConnect(t, d.AdminDSN())
	const params, key = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	if _, err := admin.Exec(context.Background(), `UPDATE bulkhead.users SET password_hash = $1 WHERE tenant_id = $2 AND id = $3`, params+"$"+key, t1.Tenant.ID, t1.Bob); err != nil {
		t.Fatal(err)
	}
	preauth := as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil)
	if p, err := d.DB.PasswordParams(preauth, bobEmail); err != nil || p != params {
		t.Errorf("T1 parameters of Bob's password: %q %v, want %q", p, err, params)
	}
	if id, err := d.DB.CheckPassword(preauth, bobEmail, key); err != nil || id != t1.Bob {
		t.Errorf("T1 check of Bob's password: %s %v, want Bob %s", id, err, t1.Bob)
	}
	for _, wrong := range []string{"", key[:len(key)-1], key + "A", params + "$" + key} {
		if id, err := d.DB.CheckPassword(preauth, bobEmail, wrong); !errors.Is(err, bulkhead.ErrNotFound) {
			t.Errorf("T1 check of Bob's password with key %q: %s %v, want ErrNotFound", wrong, id, err)
		}
	}
	t2pre := as(t, t2.Tenant.ID, uuid.Nil, uuid.Nil)
	if p, err := d.DB.PasswordParams(t2pre, bobEmail); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("T2 look-up of T1 Bob's email: %q %v, want ErrNotFound", p, err)
	}
	if id, err := d.DB.CheckPassword(t2pre, bobEmail, key); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("T2 check of T1 Bob's password: %s %v, want ErrNotFound", id, err)
	}
	if _, err := d.DB.PasswordParams(preauth, "nobody@example.com"); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("unknown email: %v", err)
	}
	// Registration is closed by default.
	if _, err := d.DB.RegisterUser(as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil), "new@example.com", "New", "x"); !errors.Is(err, bulkhead.ErrForbidden) {
		t.Errorf("register in a closed tenant: %v", err)
	}
	// The runtime role can't read other entities' credential rows even in its tenant.
	keys := ids(t, d.DB, as(t, t1.Tenant.ID, t1.Bob, uuid.Nil), `SELECT id FROM bulkhead.api_keys`)
	if len(keys) != 0 {
		t.Errorf("Bob sees %d API keys (Alice's)", len(keys))
	}
	if own := ids(t, d.DB, as(t, t1.Tenant.ID, t1.Alice, uuid.Nil), `SELECT id FROM bulkhead.api_keys`); len(own) != 1 {
		t.Errorf("Alice sees %d of her API keys, want 1", len(own))
	}
}

// TestDefinerFunctionsRevealNoHash is finding 3 of issue 11: as the runtime
// role, in the scope of an entity (another user of the victim's tenant, the
// victim itself, with no context at all), no SECURITY DEFINER function
// returns the victim's password hash or entity id, nor an API key's or
// refresh token's stored hash or owner; in the pre-authentication scope the
// functions answer only a matching presented key, and never with a hash.
// The old auth_user_by_email is gone.
func TestDefinerFunctionsRevealNoHash(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	t1 := demo.T1
	ctx := context.Background()
	admin := mustConnect(t, d.AdminDSN())
	bobEmail := fmt.Sprintf("Bob@%s.example", t1.Tenant.ID)
	const params, key = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA", "a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2U"
	if _, err := admin.Exec(ctx, `UPDATE bulkhead.users SET password_hash = $1 WHERE tenant_id = $2 AND id = $3`, params+"$"+key, t1.Tenant.ID, t1.Bob); err != nil {
		t.Fatal(err)
	}
	// Alice's demo API key and refresh token, read as the superuser.
	var keyID, tokenID uuid.UUID
	var keyHash, tokenHash []byte
	if err := admin.QueryRow(ctx, `SELECT id, secret_hash FROM bulkhead.api_keys WHERE tenant_id = $1 AND entity_id = $2`, t1.Tenant.ID, t1.Alice).Scan(&keyID, &keyHash); err != nil {
		t.Fatal(err)
	}
	if err := admin.QueryRow(ctx, `SELECT id, secret_hash FROM bulkhead.refresh_tokens WHERE tenant_id = $1 AND entity_id = $2`, t1.Tenant.ID, t1.Alice).Scan(&tokenID, &tokenHash); err != nil {
		t.Fatal(err)
	}

	// Pre-authentication: the presented key or hash must match; nothing
	// returned is a hash.
	preauth := as(t, t1.Tenant.ID, uuid.Nil, uuid.Nil)
	if k, err := d.DB.APIKeyForAuth(preauth, keyID, keyHash); err != nil || k.EntityID != t1.Alice {
		t.Errorf("API key with its hash: %+v %v, want Alice's", k, err)
	}
	if k, err := d.DB.APIKeyForAuth(preauth, keyID, tokenHash); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("API key with a wrong hash: %+v %v, want ErrNotFound", k, err)
	}
	if r, err := d.DB.RefreshTokenForAuth(preauth, tokenID, tokenHash); err != nil || r.EntityID != t1.Alice {
		t.Errorf("refresh token with its hash: %+v %v, want Alice's", r, err)
	}
	if r, err := d.DB.RefreshTokenForAuth(preauth, tokenID, keyHash); !errors.Is(err, bulkhead.ErrNotFound) {
		t.Errorf("refresh token with a wrong hash: %+v %v, want ErrNotFound", r, err)
	}

	// Every definer function, called with everything an attacker knows, in
	// every scope that is not a pre-authentication scope.
	calls := []struct {
		sql  string
		args []any
	}{
		{`SELECT bulkhead.auth_password_params($1)::text`, []any{bobEmail}},
		{`SELECT bulkhead.auth_password_check($1, $2)::text`, []any{bobEmail, key}},
		{`SELECT f::text FROM bulkhead.auth_api_key($1, $2) f`, []any{keyID, keyHash}},
		{`SELECT f::text FROM bulkhead.auth_refresh_token($1, $2) f`, []any{tokenID, tokenHash}},
		{`SELECT bulkhead.auth_register($1, 'x', 'y')::text`, []any{"intruder@example.com"}},
		{`SELECT bulkhead.notify_listen()`, nil},
	}
	if _, err := admin.Exec(ctx, `UPDATE bulkhead.tenants SET open_registration = true WHERE id = $1`, t1.Tenant.ID); err != nil {
		t.Fatal(err)
	}
	secrets := []string{key, params, t1.Bob.String(), t1.Alice.String(), fmt.Sprintf("%x", keyHash), fmt.Sprintf("%x", tokenHash)}
	conn := mustConnect(t, d.AppDSN())
	for name, scope := range map[string][2]uuid.UUID{
		"another user of T1 (Charlie)": {t1.Tenant.ID, t1.Charlie},
		"the victim itself (Bob)":      {t1.Tenant.ID, t1.Bob},
		"no context":                   {uuid.Nil, uuid.Nil},
	} {
		for _, c := range calls {
			var out []*string
			err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				if scope[0] != uuid.Nil {
					enter(t, tx, bulkhead.Scope{Tenant: scope[0], Entity: scope[1]})
				}
				rows, err := tx.Query(ctx, c.sql, c.args...)
				if err != nil {
					return err
				}
				out, err = pgx.CollectRows(rows, pgx.RowTo[*string])
				return errors.Join(err, errRollback)
			})
			if !errors.Is(err, errRollback) {
				t.Errorf("%s: %s: %v", name, c.sql, err)
				continue
			}
			for _, v := range out {
				if v == nil {
					continue
				}
				for _, s := range secrets {
					if strings.Contains(*v, s) {
						t.Errorf("%s: %s returned %q, which holds %q", name, c.sql, *v, s)
					}
				}
				if *v != "" {
					t.Errorf("%s: %s answered %q, want nothing", name, c.sql, *v)
				}
			}
		}
	}
	var n int
	if err := admin.QueryRow(ctx, `SELECT count(*) FROM bulkhead.users WHERE email = 'intruder@example.com'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("auth_register in an entity's scope created %d users (%v)", n, err)
	}
	if _, err := conn.Exec(ctx, `SELECT * FROM bulkhead.auth_user_by_email($1)`, bobEmail); sqlState(err) != "42883" {
		t.Errorf("auth_user_by_email: %v, want 42883 (it must be gone)", err)
	}
}

// errRollback rolls a test transaction back.
var errRollback = errors.New("roll back")
