package policylock

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// ObserveMatrix runs the reference model's fixture on the database conn is
// connected to and returns the matrix PostgreSQL enforces, in the layout of
// model.Matrix. conn must be a superuser (it inserts the fixture past
// row-level security and switches to the runtime role with SET LOCAL ROLE);
// key is the context key of the database's bulkhead_context extension.
// Everything runs in one transaction that is rolled back: nothing is left
// behind, whatever happens. It returns ErrPrivilege if conn is not a
// superuser.
func ObserveMatrix(ctx context.Context, conn *pgx.Conn, key postgres.ContextKey, tables []rls.Table, fx *model.Fixture) ([]model.TableMatrix, error) {
	var super bool
	if err := conn.QueryRow(ctx, "SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return nil, fmt.Errorf("matrix: %w", err)
	}
	var missing []string
	for _, t := range tables {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", postgres.Schema+"."+t.Name).Scan(&ok); err != nil {
			return nil, fmt.Errorf("matrix: %w", err)
		}
		if !ok {
			missing = append(missing, postgres.Schema+"."+t.Name)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the visibility matrix is that of bulkhead's own schema (the reference model, rls/model), and this database has no %s: lock and check the catalog only (--no-matrix)", strings.Join(missing, ", "))
	}
	if !super {
		return nil, fmt.Errorf("%w: the matrix inserts the model's fixture (rolled back) past row-level security and needs a superuser connection; without one, lock and check the catalog only (--no-matrix)", ErrPrivilege)
	}
	// The context extension takes one context per transaction: each caller
	// gets its own transaction, with the fixture inserted again, rolled back.
	out := make([]model.TableMatrix, len(tables))
	for i, t := range tables {
		out[i] = model.TableMatrix{Table: t.Name, Kind: t.Kind.String()}
	}
	for _, c := range fx.Callers {
		if err := observeCaller(ctx, conn, key, tables, fx, c, out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// observeCaller fills c's cell of every table in out, in one transaction
// that is rolled back.
func observeCaller(ctx context.Context, conn *pgx.Conn, key postgres.ContextKey, tables []rls.Table, fx *model.Fixture, c model.Caller, out []model.TableMatrix) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("matrix: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	o := &observer{tx: tx, fx: fx, key: key, m: model.New(tables, fx.Rows, fx.Now)}
	if err := o.insertFixture(ctx, tables); err != nil {
		return err
	}
	refused := make([][]string, len(tables))
	for i, t := range tables {
		if refused[i], err = o.refused(ctx, t); err != nil {
			return err
		}
	}
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{postgres.Runtime}.Sanitize()); err != nil {
		return fmt.Errorf("matrix: %w", err)
	}
	if c.Tenant != uuid.Nil {
		sql, args, err := key.EnterSQL(bulkhead.Scope{Tenant: c.Tenant, Entity: c.Entity, ActingFor: c.ActingFor})
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, sql, args...); err != nil {
			return fmt.Errorf("matrix: enter the context of %s (is the context key the database's?): %w", c.Name, err)
		}
	}
	for i, t := range tables {
		cell, err := o.cell(ctx, t, c)
		if err != nil {
			return fmt.Errorf("matrix %s as %s: %w", t.Name, c.Name, err)
		}
		cell.Refused = refused[i]
		out[i].Cells = append(out[i].Cells, cell)
	}
	return nil
}

type observer struct {
	tx  pgx.Tx
	fx  *model.Fixture
	m   *model.Model
	key postgres.ContextKey
}

func qualified(t rls.Table) string { return pgx.Identifier{postgres.Schema, t.Name}.Sanitize() }

func (o *observer) insertFixture(ctx context.Context, tables []rls.Table) error {
	b := &pgx.Batch{}
	for _, t := range tables {
		for _, r := range o.fx.Rows[t.Name] {
			cols, args := columns(r)
			q := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", qualified(t), idents(cols), placeholders(len(cols), 1))
			b.Queue(q, args...)
		}
	}
	if err := o.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("matrix: insert the model's fixture (is this bulkhead's schema?): %w", err)
	}
	return nil
}

// refused lists the commands the runtime role holds no privilege for.
func (o *observer) refused(ctx context.Context, t rls.Table) ([]string, error) {
	var out []string
	for _, cmd := range rls.AllCommands {
		fn := "has_any_column_privilege"
		if cmd == rls.Delete {
			fn = "has_table_privilege"
		}
		var ok bool
		if err := o.tx.QueryRow(ctx, fmt.Sprintf("SELECT %s($1, $2::regclass, $3)", fn), postgres.Runtime, postgres.Schema+"."+t.Name, string(cmd)).Scan(&ok); err != nil {
			return nil, fmt.Errorf("matrix: privileges on %s: %w", t.Name, err)
		}
		if !ok {
			out = append(out, string(cmd))
		}
	}
	return out, nil
}

// cell runs every shape on t as c (already in the transaction's context),
// each in a savepoint rolled back afterwards.
func (o *observer) cell(ctx context.Context, t rls.Table, c model.Caller) (model.Cell, error) {
	cell := model.Cell{Caller: c.Name, Relation: c.Relation}
	q := qualified(t)
	rows := o.fx.Rows[t.Name]
	label := func(r model.Row) string {
		l := o.fx.Label(r)
		if o.fx.Name(r[tenantCol(t)]) == "t2" || (t.TenantColumn == "id" && o.fx.Name(r["id"]) == "t2") {
			l = "t2:" + l
		}
		return l
	}
	for _, r := range rows {
		where, args := pkWhere(t, r, 1)
		n, err := o.try(ctx, "SELECT 1 FROM "+q+" WHERE "+where, args, true)
		if err != nil {
			return cell, err
		}
		if n == 1 {
			cell.Sees = append(cell.Sees, label(r))
		}
		n, err = o.try(ctx, "DELETE FROM "+q+" WHERE "+where, args, false)
		if err != nil {
			return cell, err
		}
		if n == 1 {
			cell.Deletes = append(cell.Deletes, label(r))
		}
	}
	sp := model.Specs[t.Name]
	var template model.Row
	for _, r := range rows {
		if o.fx.Name(r[tenantCol(t)]) == "t1" || o.fx.Name(r["id"]) == "t1" {
			template = r
			break
		}
	}
	for i, set := range sp.Inserts {
		nr := fresh(t, template, o.fx.Resolve(set), i)
		cols, args := columns(nr)
		n, err := o.try(ctx, fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", q, idents(cols), placeholders(len(cols), 1)), args, false)
		if err != nil {
			return cell, err
		}
		if n == 1 {
			cell.Inserts = append(cell.Inserts, describe(o.fx, set))
		}
	}
	for i, set := range sp.Updates {
		set = o.fx.Resolve(set)
		cols, setArgs := columns(set)
		assign := make([]string, len(cols))
		for k, col := range cols {
			assign[k] = fmt.Sprintf("%s = $%d", pgx.Identifier{col}.Sanitize(), k+1)
		}
		for _, r := range rows {
			if i > 0 && describe(o.fx, set) == describe(o.fx, pick(r, cols)) {
				continue // not a move for this row
			}
			where, wargs := pkWhere(t, r, len(cols)+1)
			n, err := o.try(ctx, "UPDATE "+q+" SET "+strings.Join(assign, ", ")+" WHERE "+where, append(slices.Clone(setArgs), wargs...), false)
			if err != nil {
				return cell, err
			}
			if n != 1 {
				continue
			}
			if i == 0 {
				cell.Updates = append(cell.Updates, label(r))
			} else {
				cell.Moves = append(cell.Moves, label(r)+": "+describe(o.fx, set))
			}
		}
	}
	return cell, nil
}

// try runs one statement in a savepoint and rolls it back. It returns the
// rows returned or affected; a refusal (42501, no privilege or a WITH CHECK)
// is 0; a constraint error means the policies let the row through (they
// are checked before constraints) and counts as 1. Any other error ends
// the matrix: the fixture does not fit the database.
func (o *observer) try(ctx context.Context, sql string, args []any, query bool) (int64, error) {
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT shape")
	b.Queue(sql, args...)
	b.Queue("ROLLBACK TO SAVEPOINT shape")
	br := o.tx.SendBatch(ctx, b)
	_, err := br.Exec()
	var n int64
	if err == nil {
		if query {
			var rows pgx.Rows
			rows, err = br.Query()
			if err == nil {
				for rows.Next() {
					n++
				}
				rows.Close()
				err = rows.Err()
			}
		} else {
			var ct pgconn.CommandTag
			ct, err = br.Exec()
			n = ct.RowsAffected()
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	cerr := br.Close()
	if err == nil && cerr != nil {
		err = cerr
	}
	if err == nil {
		return n, nil
	}
	if _, rerr := o.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT shape"); rerr != nil {
		return 0, errors.Join(err, rerr)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch {
		case pe.Code == "42501":
			return 0, nil
		case strings.HasPrefix(pe.Code, "23"):
			return 1, nil
		}
	}
	return 0, fmt.Errorf("%s: %w", sql, err)
}

func tenantCol(t rls.Table) string {
	if t.TenantColumn != "" {
		return t.TenantColumn
	}
	return "tenant_id"
}

// pk returns the primary-key columns of t (the generator's layout).
func pk(t rls.Table) []string {
	switch t.Kind {
	case rls.Participants:
		return []string{"tenant_id", "room_id", "entity_id"}
	case rls.Link:
		return []string{"tenant_id", t.ParentKey, t.OtherKey}
	}
	if t.TenantColumn == "id" {
		return []string{"id"}
	}
	return []string{"tenant_id", "id"}
}

func pkWhere(t rls.Table, r model.Row, from int) (string, []any) {
	var conds []string
	var args []any
	for i, c := range pk(t) {
		conds = append(conds, fmt.Sprintf("%s = $%d", pgx.Identifier{c}.Sanitize(), from+i))
		args = append(args, r[c])
	}
	return strings.Join(conds, " AND "), args
}

// fresh gives a candidate row a new primary key and new values in its
// unique columns, unless set names them.
func fresh(t rls.Table, r, set model.Row, n int) model.Row {
	nr := r.With(nil)
	if _, ok := set["id"]; !ok && slices.Contains(pk(t), "id") {
		nr["id"] = uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("lock/%s/%d", t.Name, n)))
	}
	switch t.Name {
	case "message_servers":
		nr["external_id"] = fmt.Sprintf("new-%d", n)
	case "rooms":
		nr["channel_id"] = fmt.Sprintf("new-%d", n)
	case "chunks":
		nr["ord"] = 100 + n
	case "users":
		nr["email"] = fmt.Sprintf("new%d@example.com", n)
	case "api_keys", "refresh_tokens":
		nr["secret_hash"] = []byte(fmt.Sprintf("new-%d", n))
	}
	return nr.With(set)
}

func pick(r model.Row, cols []string) model.Row {
	out := model.Row{}
	for _, c := range cols {
		out[c] = r[c]
	}
	return out
}

// describe renders assignments as "col=value ..." with fixture names, as
// the model's matrix does.
func describe(f *model.Fixture, set model.Row) string {
	keys := make([]string, 0, len(set))
	for k := range set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v := set[k]
		if s, ok := v.(string); ok && strings.HasPrefix(s, "@") {
			v = s[1:]
		} else {
			v = f.Name(v)
		}
		parts[i] = fmt.Sprintf("%s=%v", k, v)
	}
	return strings.Join(parts, " ")
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

func idents(cols []string) string {
	q := make([]string, len(cols))
	for i, c := range cols {
		q[i] = pgx.Identifier{c}.Sanitize()
	}
	return strings.Join(q, ", ")
}

func placeholders(n, from int) string {
	ps := make([]string, n)
	for i := range ps {
		ps[i] = fmt.Sprintf("$%d", from+i)
	}
	return strings.Join(ps, ", ")
}
