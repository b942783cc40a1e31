package adopt

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// typedSchema is a small legacy schema whose tenant column org_id is of
// type %[1]s: projects carry it, tasks carry it but some rows lack it
// (their project gives it), notes lack the column (backfill adds it).
const typedSchema = `
CREATE TABLE projects (id bigint PRIMARY KEY, org_id %[1]s NOT NULL, name text NOT NULL);
CREATE INDEX projects_org_id_idx ON projects (org_id);
CREATE TABLE tasks (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES projects (id), org_id %[1]s, title text NOT NULL);
CREATE TABLE notes (id bigint PRIMARY KEY, project_id bigint NOT NULL REFERENCES projects (id), body text NOT NULL);
`

// typedOrg is one tenant of the typed schema with the rows it owns: the
// model the test's expectations come from (never from the SQL under test).
type typedOrg struct {
	id                     string // as the application puts it in its setting
	projects, tasks, notes []int64
}

// TestTenantTypes adopts a database whose tenant column is text, bigint or
// integer through the whole cycle: Inspect takes the type from the
// columns, backfill adds and fills typed columns, and once enforced the
// application (connected as the owner) sees exactly its tenant's rows in
// every table, nothing without a tenant, and can't write another tenant's;
// a setting that isn't of the type fails the statement; rollback restores
// the original exactly. A column of another type than the plan's is
// refused before anything changes.
func TestTenantTypes(t *testing.T) {
	for _, tc := range []struct {
		typ     string
		a, b    string // two tenants
		invalid string // a setting that is not of the type ("" for text)
	}{
		{"text", "org_acme", "Globex Corp.", ""},
		{"bigint", "9000000001", "-42", "acme"},      // 9000000001 does not fit an integer
		{"integer", "7", "2147483647", "3000000000"}, // 3000000000 is not an integer
	} {
		t.Run(tc.typ, func(t *testing.T) {
			t.Parallel()
			testTenantType(t, tc.typ, tc.a, tc.b, tc.invalid)
		})
	}
}

func testTenantType(t *testing.T, typ, a, b, invalid string) {
	ctx := context.Background()
	d := newEmptyDB(t)
	op := mustConnect(t, d.adminDSN())
	app := mustConnect(t, d.appDSN())
	if _, err := app.Exec(ctx, fmt.Sprintf(typedSchema, typ)); err != nil {
		t.Fatal(err)
	}
	orgs := seedOrgs(t, app, a, b)

	p, err := Inspect(ctx, op, InspectOptions{TenantColumns: []string{"org_id"}, TenantSetting: "app.org", RuntimeRole: d.runtime()})
	if err != nil {
		t.Fatal(err)
	}
	if p.TenantType != typ {
		t.Fatalf("inspect: tenant_type %q, want %q", p.TenantType, typ)
	}
	for _, tb := range p.Tables {
		if tb.Kind != KindTenant || tb.Decide || (tb.Name != "projects" && len(tb.Backfill) != 1) {
			t.Fatalf("inspect: %+v", tb)
		}
	}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	orig := checksums(t, op, p)
	o := Options{BatchSize: 2}
	if _, err := Backfill(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Shadow(ctx, op, p, nil, o); err != nil {
		t.Fatal(err)
	}
	if err := Enforce(ctx, op, p, nil, EnforceOptions{Options: o}); err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, op, p, nil); err != nil {
		t.Fatal(err)
	}

	// in runs fn as the application with tenant's setting (none for "").
	in := func(tenant string, fn func(pgx.Tx) error) error {
		return pgx.BeginFunc(ctx, app, func(tx pgx.Tx) error {
			if tenant != "" {
				if _, err := tx.Exec(ctx, "SELECT set_config('app.org', $1, true)", tenant); err != nil {
					return err
				}
			}
			return fn(tx)
		})
	}
	ids := func(tenant, table string) []int64 {
		t.Helper()
		var out []int64
		err := in(tenant, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, "SELECT id FROM "+table+" ORDER BY id") // forgets the filter
			if err != nil {
				return err
			}
			out, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			return err
		})
		if err != nil {
			t.Fatalf("%s as %q: %v", table, tenant, err)
		}
		return out
	}
	for _, org := range orgs {
		for table, want := range map[string][]int64{"projects": org.projects, "tasks": org.tasks, "notes": org.notes} {
			if got := ids(org.id, table); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s as %q: %v, want exactly its own %v", table, org.id, got, want)
			}
		}
	}
	if got := ids("", "tasks"); len(got) != 0 {
		t.Errorf("tasks without a tenant: %v, want none", got)
	}
	// A new row takes the tenant from the context; another tenant's is
	// refused.
	err = in(a, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO notes (id, project_id, body) VALUES (1000, $1, 'new')", orgs[0].projects[0])
		return err
	})
	if err != nil {
		t.Fatalf("insert as %q: %v", a, err)
	}
	if got := ids(a, "notes"); len(got) != len(orgs[0].notes)+1 || got[len(got)-1] != 1000 {
		t.Errorf("notes as %q after its insert: %v", a, got)
	}
	if got := ids(b, "notes"); fmt.Sprint(got) != fmt.Sprint(orgs[1].notes) {
		t.Errorf("notes as %q after %q's insert: %v, want %v", b, a, got, orgs[1].notes)
	}
	err = in(a, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO projects VALUES (1001, $1, 'theirs')", b)
		return err
	})
	if sqlState(err) != "42501" {
		t.Errorf("insert of %q's row as %q: %v, want a row-level security refusal", b, a, err)
	}
	if invalid != "" {
		err = in(invalid, func(tx pgx.Tx) error {
			_, err := tx.Exec(ctx, "SELECT id FROM projects")
			return err
		})
		if sqlState(err) != "22P02" && sqlState(err) != "22003" {
			t.Errorf("read with the setting %q (not a %s): %v, want the statement to fail", invalid, typ, err)
		}
	}
	if _, err := op.Exec(ctx, "DELETE FROM notes WHERE id = 1000"); err != nil {
		t.Fatal(err)
	}

	if _, err := Rollback(ctx, op, p, nil, PhaseOriginal, o); err != nil {
		t.Fatal(err)
	}
	if s := diffMaps(orig, checksums(t, op, p)); s != "" {
		t.Fatalf("rollback to original: data differs:\n%s", s)
	}

	// A plan whose tenant_type is not the columns' is refused before
	// anything runs.
	other := "uuid"
	if typ == "uuid" {
		other = "text"
	}
	p.TenantType = other
	if _, err := Backfill(ctx, op, p, nil, o); err == nil || !strings.Contains(err.Error(), "not the plan's tenant_type") {
		t.Errorf("backfill with tenant_type %s on %s columns: %v, want a refusal naming the type", other, typ, err)
	}
	if s := diffMaps(orig, checksums(t, op, p)); s != "" {
		t.Errorf("a refused backfill changed data:\n%s", s)
	}
}

// seedOrgs writes the typed schema's rows for each tenant id and returns
// the model: three projects each; every project has two tasks (the second
// without org_id) and one note.
func seedOrgs(t testing.TB, app *pgx.Conn, ids ...string) []*typedOrg {
	t.Helper()
	ctx := context.Background()
	var orgs []*typedOrg
	for _, id := range ids {
		orgs = append(orgs, &typedOrg{id: id})
	}
	var next int64
	for _, o := range orgs {
		for range 3 {
			next++
			pr := next
			o.projects = append(o.projects, pr)
			if _, err := app.Exec(ctx, "INSERT INTO projects VALUES ($1, $2, 'p')", pr, o.id); err != nil {
				t.Fatal(err)
			}
			for k := range 2 {
				next++
				org := &o.id
				if k == 1 {
					org = nil
				}
				o.tasks = append(o.tasks, next)
				if _, err := app.Exec(ctx, "INSERT INTO tasks VALUES ($1, $2, $3, 't')", next, pr, org); err != nil {
					t.Fatal(err)
				}
			}
			next++
			o.notes = append(o.notes, next)
			if _, err := app.Exec(ctx, "INSERT INTO notes VALUES ($1, $2, 'n')", next, pr); err != nil {
				t.Fatal(err)
			}
		}
	}
	return orgs
}

// newEmptyDB is an empty database owned by the application's role.
func newEmptyDB(t testing.TB) *db {
	t.Helper()
	return newDBFrom(t, "template0")
}

// TestInspectTenantTypeMajority: the plan's tenant type is the supported
// type most tenant columns have; a table whose column has another type,
// supported or not, is left for the operator to decide, with a note; with
// no supported type at all the plan says uuid and every table is left.
func TestInspectTenantTypeMajority(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, schema, want string
		decide             []string
	}{
		{"majority", `CREATE TABLE a (id int PRIMARY KEY, org_id text); CREATE TABLE b (id int PRIMARY KEY, org_id text);
CREATE TABLE c (id int PRIMARY KEY, org_id bigint); CREATE TABLE d (id int PRIMARY KEY, org_id character varying(20));`, "text", []string{"c", "d"}},
		{"tie, first by name", `CREATE TABLE a (id int PRIMARY KEY, org_id text); CREATE TABLE b (id int PRIMARY KEY, org_id integer);`, "integer", []string{"a"}},
		{"none supported", `CREATE TABLE a (id int PRIMARY KEY, org_id numeric); CREATE TABLE b (id int PRIMARY KEY, org_id character varying);`, "uuid", []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newEmptyDB(t)
			op := mustConnect(t, d.adminDSN())
			if _, err := mustConnect(t, d.appDSN()).Exec(ctx, tc.schema); err != nil {
				t.Fatal(err)
			}
			p, err := Inspect(ctx, op, InspectOptions{TenantColumns: []string{"org_id"}, TenantSetting: "app.org", RuntimeRole: d.runtime()})
			if err != nil {
				t.Fatal(err)
			}
			if p.TenantType != tc.want {
				t.Errorf("tenant_type %q, want %q", p.TenantType, tc.want)
			}
			var decide []string
			for _, tb := range p.Tables {
				if tb.Decide {
					decide = append(decide, tb.Name)
					if !strings.Contains(strings.Join(tb.Notes, "\n"), "tenant_type is "+tc.want) {
						t.Errorf("%s: notes %q, want one naming the plan's type", tb.Name, tb.Notes)
					}
				}
			}
			if fmt.Sprint(decide) != fmt.Sprint(tc.decide) {
				t.Errorf("left to decide: %v, want %v", decide, tc.decide)
			}
		})
	}
}
