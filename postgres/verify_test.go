package postgres_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// TestPoliciesMatchTheModel is the exhaustive verifier: on real PostgreSQL,
// as the runtime role, every caller of the fixture runs every statement
// shape on every tenant table, and what PostgreSQL did is compared with
// what the reference model (package rls/model, written from the rules, not
// from the SQL) predicts.
func TestPoliciesMatchTheModel(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	v := newVerifier(t, d, postgres.Tables)
	res := v.run(t, v.tables, false)
	t.Logf("policy matrix: %d statements (%d tables × %d callers), %d disagreements, %d inconclusive (constraint errors where the model allows)",
		res.statements, len(postgres.Tables), len(v.fx.Callers), len(res.disagreements), res.inconclusive)
	for _, dis := range res.disagreements {
		t.Error(dis)
	}
	if res.statements < 10000 {
		t.Errorf("only %d statements: the matrix lost its shapes", res.statements)
	}
}

// verifier runs the matrix on one database.
type verifier struct {
	d      *testdb.Database
	fx     *model.Fixture
	m      *model.Model
	tables []rls.Table
}

type result struct {
	statements, inconclusive int
	disagreements            []string
}

func newVerifier(t *testing.T, d *testdb.Database, tables []rls.Table) *verifier {
	t.Helper()
	return newVerifierWith(t, d, tables, model.NewFixture(nowForFixture()))
}

func nowForFixture() time.Time { return time.Now() }

// newVerifierWith inserts fx's rows of tables (as superuser) and returns a
// verifier over them.
func newVerifierWith(t *testing.T, d *testdb.Database, tables []rls.Table, fx *model.Fixture) *verifier {
	t.Helper()
	v := &verifier{d: d, fx: fx, m: model.New(tables, fx.Rows, fx.Now), tables: tables}
	admin := testdb.MustConnect(t, d.AdminDSN())
	ctx := context.Background()
	for _, tb := range tables {
		for _, r := range fx.Rows[tb.Name] {
			cols, args := columns(r)
			q := fmt.Sprintf("INSERT INTO %s.%s (%s) VALUES (%s)", postgres.Schema, tb.Name, strings.Join(cols, ", "), placeholders(len(cols), 1))
			if _, err := admin.Exec(ctx, q, args...); err != nil {
				t.Fatalf("fixture %s %v: %v", tb.Name, r, err)
			}
		}
	}
	return v
}

func columns(r model.Row) ([]string, []any) {
	cols := make([]string, 0, len(r))
	for c := range r {
		cols = append(cols, c)
	}
	sort.Strings(cols)
	args := make([]any, len(cols))
	for i, c := range cols {
		args[i] = r[c]
	}
	return cols, args
}

func placeholders(n, from int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("$%d", from+i)
	}
	return strings.Join(ps, ", ")
}

// outcome is what a statement did: refused (42501, or 0A000 for COPY),
// a constraint error, or rows affected/returned.
type outcome struct {
	refused    bool
	constraint bool
	rows       int64
	other      string
}

func (o outcome) String() string {
	switch {
	case o.other != "":
		return "error " + o.other
	case o.refused:
		return "refused"
	case o.constraint:
		return "constraint error"
	}
	return fmt.Sprintf("%d rows", o.rows)
}

func outcomeOf(n int64, err error) outcome {
	if err == nil {
		return outcome{rows: n}
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42501" || pe.Code == "0A000":
			return outcome{refused: true}
		case strings.HasPrefix(pe.Code, "23"):
			return outcome{constraint: true}
		}
		return outcome{other: pe.Code + " " + pe.Message}
	}
	return outcome{other: err.Error()}
}

func refused() outcome       { return outcome{refused: true} }
func affected(n int) outcome { return outcome{rows: int64(n)} }
func (o outcome) ok() bool   { return !o.refused && !o.constraint && o.other == "" }
func same(a, b outcome) bool { return a.refused == b.refused && a.rows == b.rows && a.other == b.other }

// pk returns the primary-key columns of table.
func pk(tb rls.Table) []string {
	switch tb.Kind {
	case rls.Participants:
		return []string{"tenant_id", "room_id", "entity_id"}
	case rls.Link:
		return []string{"tenant_id", tb.ParentKey, tb.OtherKey}
	}
	if tb.TenantColumn == "id" {
		return []string{"id"}
	}
	return []string{"tenant_id", "id"}
}

// stmt is one statement of the matrix and the model's prediction for a caller.
type stmt struct {
	shape string
	sql   string
	args  []any
	copy  bool // COPY FROM the row in args[0]
	want  func(c model.Caller) outcome
}

// run runs the statements on tables for every caller and compares. With
// firstOnly it runs callers one at a time and stops at the first caller
// that disagrees (the mutation test only needs to know there is one).
func (v *verifier) run(t *testing.T, tables []rls.Table, firstOnly bool) result {
	var res result
	var stmts []stmt
	for _, tb := range tables {
		stmts = append(stmts, v.statements(tb)...)
	}
	if firstOnly {
		for _, c := range v.fx.Callers {
			got := v.execAll(t, c, stmts)
			for i, s := range stmts {
				res.statements++
				if g, want := got[i], s.want(c); !same(g, want) && !(g.constraint && want.ok()) {
					res.disagreements = append(res.disagreements, fmt.Sprintf("%s [%s]: %s: PostgreSQL %s, model %s", c.Name, c.Relation, s.shape, g, want))
					return res
				}
			}
		}
		return res
	}
	// Callers run concurrently, each in its own transaction; every
	// statement is rolled back to its savepoint, so they can't see each
	// other's writes.
	got := make([][]outcome, len(v.fx.Callers))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 4)
	for i, c := range v.fx.Callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			got[i] = v.execAll(t, c, stmts)
		}()
	}
	wg.Wait()
	for ci, c := range v.fx.Callers {
		got := got[ci]
		if got == nil {
			continue
		}
		for i, s := range stmts {
			want := s.want(c)
			res.statements++
			g := got[i]
			if g.constraint && want.ok() {
				res.inconclusive++
				if res.inconclusive <= 3 {
					t.Logf("inconclusive: %s: %s", c.Name, s.shape)
				}
				continue
			}
			if !same(g, want) {
				res.disagreements = append(res.disagreements, fmt.Sprintf("%s [%s]: %s: PostgreSQL %s, model %s", c.Name, c.Relation, s.shape, g, want))
			}
		}
	}
	return res
}

// execAll runs stmts as c, each in a savepoint rolled back afterwards, in
// one transaction whose context is set as InScope sets it.
func (v *verifier) execAll(t *testing.T, c model.Caller, stmts []stmt) []outcome {
	t.Helper()
	ctx := context.Background()
	out := make([]outcome, len(stmts))
	body := func(tx pgx.Tx) error {
		for i, s := range stmts {
			if _, err := tx.Exec(ctx, "SAVEPOINT v"); err != nil {
				return err
			}
			var n int64
			var err error
			switch {
			case s.copy:
				r := s.args[0].(model.Row)
				cols, vals := columns(r)
				n, err = tx.CopyFrom(ctx, pgx.Identifier{postgres.Schema, s.sql}, cols, pgx.CopyFromRows([][]any{vals}))
			case strings.Contains(s.sql, "RETURNING") || strings.HasPrefix(s.sql, "SELECT"):
				var rows pgx.Rows
				rows, err = tx.Query(ctx, s.sql, s.args...)
				if err == nil {
					for rows.Next() {
						n++
					}
					rows.Close()
					err = rows.Err()
				}
			default:
				var ct pgconn.CommandTag
				ct, err = tx.Exec(ctx, s.sql, s.args...)
				n = ct.RowsAffected()
			}
			out[i] = outcomeOf(n, err)
			if _, err := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT v"); err != nil {
				return err
			}
		}
		return nil
	}
	if c.Tenant == uuid.Nil {
		tx, err := v.d.DB.Pool().Begin(ctx)
		if err != nil {
			t.Error(err)
			return nil
		}
		defer tx.Rollback(ctx)
		if err := body(tx); err != nil {
			t.Errorf("%s: %v", c.Name, err)
			return nil
		}
		return out
	}
	sctx, err := bulkhead.WithScope(ctx, bulkhead.Scope{Tenant: c.Tenant, Entity: c.Entity, ActingFor: c.ActingFor})
	if err != nil {
		t.Error(err)
		return nil
	}
	errRollback := errors.New("rollback")
	if err := v.d.DB.InScope(sctx, func(tx pgx.Tx) error {
		if err := body(tx); err != nil {
			return err
		}
		return errRollback
	}); !errors.Is(err, errRollback) {
		t.Errorf("%s: %v", c.Name, err)
		return nil
	}
	return out
}
