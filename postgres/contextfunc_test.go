package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestContextFunctionsReadTheEnteredContext checks current_tenant(),
// current_entity() and current_acting_for() (inlined calls to
// bulkhead_context's C functions since migration 00021) against their
// definition: the setting read with current_setting as a uuid, the ids
// enter() was given, NULL for none. Three distinct ids catch a function
// reading another's setting; the last case reads them in a parallel worker,
// where the settings arrive through PostgreSQL's copy of the leader's.
func TestContextFunctionsReadTheEnteredContext(t *testing.T) {
	d := testdb.New(t)
	ctx := context.Background()
	conn := testdb.MustConnect(t, d.AppDSN())
	full := bulkhead.Scope{Tenant: uuid.New(), Entity: uuid.New(), ActingFor: uuid.New()}
	tenantOnly := bulkhead.Scope{Tenant: uuid.New()}
	for _, c := range []struct {
		name     string
		scope    *bulkhead.Scope
		parallel bool
	}{
		{name: "no context"},
		{name: "tenant, entity and acting-for", scope: &full},
		{name: "tenant only", scope: &tenantOnly},
		{name: "in a parallel worker", scope: &full, parallel: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			tx, err := conn.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			want := [3]*uuid.UUID{}
			if c.scope != nil {
				enter(t, tx, *c.scope)
				want[0] = &c.scope.Tenant
				for i, id := range []uuid.UUID{c.scope.Entity, c.scope.ActingFor} {
					if id != uuid.Nil {
						want[i+1] = &id
					}
				}
			}
			q := `SELECT bulkhead.current_tenant(), bulkhead.current_entity(), bulkhead.current_acting_for(),
				nullif(current_setting('bulkhead.tenant_id', true), '')::uuid,
				nullif(current_setting('bulkhead.entity_id', true), '')::uuid,
				nullif(current_setting('bulkhead.acting_for', true), '')::uuid`
			if c.parallel {
				for _, set := range []string{"SET LOCAL force_parallel_mode = on", "SET LOCAL parallel_setup_cost = 0", "SET LOCAL parallel_tuple_cost = 0"} {
					if _, err := tx.Exec(ctx, set); err != nil {
						t.Fatal(err)
					}
				}
				var plan string
				if err := tx.QueryRow(ctx, "EXPLAIN (COSTS OFF, VERBOSE) "+q+" FROM generate_series(1, 2)").Scan(&plan); err != nil {
					t.Fatal(err)
				}
				if !strings.HasPrefix(plan, "Gather") {
					t.Fatalf("the query is not run by a worker: %s", plan)
				}
				q += " FROM generate_series(1, 2) LIMIT 1"
			}
			var got, model [3]*uuid.UUID
			if err := tx.QueryRow(ctx, q).Scan(&got[0], &got[1], &got[2], &model[0], &model[1], &model[2]); err != nil {
				t.Fatal(err)
			}
			for i, name := range []string{"current_tenant", "current_entity", "current_acting_for"} {
				if !sameID(got[i], want[i]) || !sameID(model[i], want[i]) {
					t.Errorf("%s() = %v, its setting reads %v; want %v", name, show(got[i]), show(model[i]), show(want[i]))
				}
			}
		})
	}
}

// TestContextFunctionsParseAsUUIDIn: the C functions decode the canonical
// form enter() writes themselves and hand every other value to uuid_in, so
// whatever a superuser puts into a setting reads exactly as the setting's
// own cast: the same uuid, or the same refusal. Set by hand as the
// superuser, the one role that can.
func TestContextFunctionsParseAsUUIDIn(t *testing.T) {
	d := testdb.New(t)
	ctx := context.Background()
	admin := testdb.MustConnect(t, d.AdminDSN())
	for _, v := range []string{
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11",
		"{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}",
		"a0eebc999c0b4ef8bb6d6bb9bd380a11",
		"a0ee-bc99-9c0b-4ef8-bb6d-6bb9-bd38-0a11",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a111",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a1g",
		"a0eebc99x9c0b-4ef8-bb6d-6bb9bd380a11",
		"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11 ",
		" a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
		"-",
	} {
		for _, fn := range []struct{ name, setting string }{{"current_tenant", "bulkhead.tenant_id"}, {"current_entity", "bulkhead.entity_id"}, {"current_acting_for", "bulkhead.acting_for"}} {
			// The outcome of q: its text (NULL: "NULL"), or the SQLSTATE
			// that refused it, so a NULL in place of a refusal shows.
			read := func(q string) string {
				tx, err := admin.Begin(ctx)
				if err != nil {
					t.Fatal(err)
				}
				defer tx.Rollback(ctx)
				if _, err := tx.Exec(ctx, "SELECT set_config($1, $2, true)", fn.setting, v); err != nil {
					t.Fatal(err)
				}
				var got *string
				var pgErr *pgconn.PgError
				switch err := tx.QueryRow(ctx, q).Scan(&got); {
				case errors.As(err, &pgErr):
					return "SQLSTATE " + pgErr.Code
				case err != nil:
					t.Fatal(err)
				case got == nil:
					return "NULL"
				}
				return *got
			}
			got := read("SELECT bulkhead." + fn.name + "()::text")
			want := read("SELECT current_setting('" + fn.setting + "')::uuid::text")
			if got != want {
				t.Errorf("%s = %q: %s() reads %s; the cast reads %s", fn.setting, v, fn.name, got, want)
			}
		}
	}
}

// TestContextFunctionsCannotBeReplaced: the C context functions belong to
// the extension, whose members the bootstrap superuser owns; neither the
// migrations' owner role nor the runtime role can replace one with a body
// of its own (42501), so what current_tenant() calls stays the C.
func TestContextFunctionsCannotBeReplaced(t *testing.T) {
	d := testdb.New(t)
	ctx := context.Background()
	for _, role := range []struct{ name, dsn string }{{"owner", d.OwnerDSN()}, {"runtime", d.AppDSN()}} {
		c := testdb.MustConnect(t, role.dsn)
		for _, fn := range []string{"current_tenant_native", "current_entity_native", "current_acting_for_native"} {
			_, err := c.Exec(ctx, "CREATE OR REPLACE FUNCTION bulkhead."+fn+"() RETURNS uuid LANGUAGE sql STABLE AS $$ SELECT NULL::uuid $$")
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
				t.Errorf("the %s role replacing %s: %v, want 42501", role.name, fn, err)
			}
		}
	}
}

func sameID(a, b *uuid.UUID) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

func show(id *uuid.UUID) string {
	if id == nil {
		return "NULL"
	}
	return id.String()
}
