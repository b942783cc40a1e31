package probe

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// outcome is what one attempt did.
type outcome struct {
	rows int64  // rows affected, or the first column of the first row of a query
	code string // SQLSTATE of the error, "" on success
	text string // first column of the first row, as text
	err  error
}

func (o outcome) ok() bool { return o.err == nil }

// try runs sql in a savepoint and rolls it back: one round trip on success.
// For a query, rows is its first column (a count) and text its text form.
func (s *session) try(ctx context.Context, sql string, query bool) outcome {
	s.attempts++
	b := &pgx.Batch{}
	b.Queue("SAVEPOINT bh_try")
	b.Queue(sql)
	b.Queue("ROLLBACK TO SAVEPOINT bh_try")
	br := s.tx.SendBatch(ctx, b)
	var o outcome
	_, err := br.Exec()
	if err == nil {
		if query {
			var v any
			err = br.QueryRow().Scan(&v)
			switch x := v.(type) {
			case int64:
				o.rows = x
			case int32:
				o.rows = int64(x)
			case nil:
			case string:
				o.text, o.rows = x, 1
			case []any, map[string]any:
				j, _ := json.Marshal(x)
				o.text, o.rows = string(j), 1
			default:
				o.text = fmt.Sprint(x)
				if bs, ok := x.([]byte); ok {
					o.text = string(bs)
				}
				o.rows = 1
			}
		} else {
			var ct pgconn.CommandTag
			ct, err = br.Exec()
			o.rows = ct.RowsAffected()
		}
	}
	if err == nil {
		_, err = br.Exec()
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT bh_try")
		o.err = err
		var pe *pgconn.PgError
		if errors.As(err, &pe) {
			o.code = pe.Code
			switch pe.Code {
			case "57014", "55P03", "40P01": // statement_timeout, lock_timeout, deadlock
				s.inconclusive = append(s.inconclusive, fmt.Sprintf("%s: %s: %s", s.attacker, sql, pe.Message))
			}
		}
	}
	return o
}

// classFor maps an attack class to what the finding is: with a plain
// tenant setting, the forged attacker only proves the setting is forgeable.
func (s *session) classFor(class string) string {
	if s.attacker == forged && !s.p.cfg.Context.Bulkhead {
		return classForge
	}
	return class
}

func (s *session) leak(class, detail, stmt string) {
	if s.classFor(class) == classForge && class != classForge {
		detail = fmt.Sprintf("the runtime role set the tenant setting %s to tenant A itself and then: %s", s.p.cfg.Context.TenantSetting, detail)
	}
	s.find(s.classFor(class), detail, stmt)
}

// reads tries to reach A's canary a without A's context.
func (s *session) reads(ctx context.Context, a row, updCol string) error {
	t := s.t
	id := where(t, a, t.identity(a))
	tc, _ := t.column(t.tenantCol)
	q := "SELECT count(*) FROM " + t.ident() + " WHERE " + id
	if o := s.try(ctx, q, true); o.ok() && o.rows > 0 {
		s.leak("read-id", "tenant A's row read by its key", q)
	}
	// A scan: the cast keeps any index on the tenant column out of it.
	q = fmt.Sprintf("SELECT count(*) FROM %s WHERE %s::text = %s", t.ident(), pgx.Identifier{t.tenantCol}.Sanitize(), literal(column{typ: "text"}, s.a))
	if o := s.try(ctx, q, true); o.ok() && o.rows > 0 {
		s.leak("read-scan", fmt.Sprintf("a scan returned %d of tenant A's rows", o.rows), q)
	}
	for _, part := range t.partitions {
		q := "SELECT count(*) FROM " + part + " WHERE " + id
		if o := s.try(ctx, q, true); o.ok() && o.rows > 0 {
			s.leak("read-partition", "tenant A's row read through partition "+part+" directly (the partition's own row-level security is off or weaker)", q)
		}
	}
	// Blind writes: no WHERE, so only the UPDATE and DELETE policies apply
	// (a WHERE or RETURNING would bring in the SELECT policies). The
	// attacker has no rows of its own here, so any row changed is someone
	// else's. Rolled back like everything else.
	visible := s.try(ctx, "SELECT count(*) FROM "+t.ident(), true)
	if visible.ok() && visible.rows == 0 {
		if updCol != "" {
			c, _ := t.column(updCol)
			v, ok := a[updCol]
			if !ok || v == null {
				v, _ = synth(t, c)
			}
			q := fmt.Sprintf("UPDATE %s SET %s = %s", t.ident(), pgx.Identifier{updCol}.Sanitize(), literal(c, v))
			if o := s.try(ctx, q, false); o.ok() && o.rows > 0 {
				s.leak("blind-update", fmt.Sprintf("an UPDATE without WHERE changed %d rows the attacker can't see (tenant A's canary among them)", o.rows), q)
			}
		}
		q := "DELETE FROM " + t.ident()
		if o := s.try(ctx, q, false); o.ok() && o.rows > 0 {
			s.leak("blind-delete", fmt.Sprintf("a DELETE without WHERE removed %d rows the attacker can't see (tenant A's canary among them)", o.rows), q)
		}
	}
	q = "COPY " + t.ident() + " TO STDOUT"
	if found, err := s.copyOut(ctx, q, a, tc); err != nil {
		return err
	} else if found {
		s.leak("copy-out", "COPY TO returned tenant A's row", q)
	}
	return nil
}

// copyOut runs COPY ... TO STDOUT and reports whether a line holds every
// identity value of a.
func (s *session) copyOut(ctx context.Context, sql string, a row, tc column) (bool, error) {
	s.attempts++
	if _, err := s.tx.Exec(ctx, "SAVEPOINT bh_copy"); err != nil {
		return false, err
	}
	var buf limitedBuffer
	_, err := s.tx.Conn().PgConn().CopyTo(ctx, &buf, sql)
	if _, rerr := s.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT bh_copy"); rerr != nil {
		return false, rerr
	}
	if err != nil {
		return false, nil
	}
	var want []string
	for _, c := range s.t.identity(a) {
		if v := a[c]; v != null {
			want = append(want, v)
		}
	}
	for _, line := range strings.Split(buf.String(), "\n") {
		fields := strings.Split(line, "\t")
		all := len(want) > 0
		for _, w := range want {
			if !slices.Contains(fields, w) {
				all = false
			}
		}
		if all {
			return true, nil
		}
	}
	return false, nil
}

// limitedBuffer keeps the first 16 MiB written to it: a table that leaks
// everything is not copied whole into memory.
type limitedBuffer struct{ bytes.Buffer }

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := 16<<20 - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// writes tries, as tenant B, to write into A, to learn of A's rows from
// constraints, and to count them through EXPLAIN.
func (s *session) writes(ctx context.Context, cs canaries) error {
	t := s.t
	// A row of tenant A written by B.
	q := insertSQL(t, cs.aFresh)
	if o := s.try(ctx, q, false); o.ok() && o.rows > 0 {
		s.leak("write-into-a", "tenant B inserted a row into tenant A", q)
	}
	if err := s.copyIn(ctx, cs.aFresh); err != nil {
		return err
	}
	control := s.try(ctx, insertSQL(t, cs.bFresh), false)
	// Unique constraints without the tenant column: B learns that A's value exists.
	keys := append([][]string{}, t.uniques...)
	if len(t.pk) > 0 {
		keys = append(keys, t.pk)
	}
	for _, u := range keys {
		if slices.Contains(u, t.tenantCol) || !control.ok() {
			continue
		}
		r := cs.bFresh.clone()
		for _, c := range u {
			r[c] = cs.a[c]
		}
		q := insertSQL(t, r)
		if o := s.try(ctx, q, false); o.code == "23505" {
			s.leak("unique-oracle", fmt.Sprintf("unique (%s) has no tenant column: B's insert of A's value fails with 23505 where a fresh value succeeds, so B learns that A's row exists", strings.Join(u, ", ")), q)
			continue
		}
		q += " ON CONFLICT DO NOTHING"
		if o := s.try(ctx, q, false); o.ok() && o.rows == 0 {
			s.leak("unique-oracle", fmt.Sprintf("unique (%s) has no tenant column: ON CONFLICT DO NOTHING inserts nothing for A's value where a fresh value inserts a row", strings.Join(u, ", ")), q)
		}
	}
	// ON CONFLICT DO UPDATE on A's key.
	if len(t.pk) > 0 && !slices.Contains(t.pk, t.tenantCol) && control.ok() {
		r := cs.bFresh.clone()
		for _, c := range t.pk {
			r[c] = cs.a[c]
		}
		var set []string
		for _, c := range t.columns {
			if _, ok := r[c.name]; ok && !slices.Contains(t.pk, c.name) && !c.generated && c.name != t.tenantCol {
				id := pgx.Identifier{c.name}.Sanitize()
				set = append(set, id+" = EXCLUDED."+id)
			}
		}
		if len(set) > 0 {
			pk := make([]string, len(t.pk))
			for i, c := range t.pk {
				pk[i] = pgx.Identifier{c}.Sanitize()
			}
			q := fmt.Sprintf("%s ON CONFLICT (%s) DO UPDATE SET %s RETURNING %s::text", insertSQL(t, r), strings.Join(pk, ", "), strings.Join(set, ", "), pgx.Identifier{t.tenantCol}.Sanitize())
			if o := s.try(ctx, q, true); o.ok() && o.text == s.a {
				s.leak("on-conflict-update", "tenant B's upsert overwrote tenant A's row", q)
			}
		}
	}
	// Foreign keys without the tenant column: B references A's parent row.
	for _, f := range t.fks {
		ap, ok := cs.aParent[f.name]
		if !ok || !control.ok() {
			continue
		}
		r := cs.bFresh.clone()
		for i, c := range f.cols {
			r[c] = ap[f.refCols[i]]
		}
		q := insertSQL(t, r)
		if o := s.try(ctx, q, false); o.ok() {
			s.leak("fk-oracle", fmt.Sprintf("foreign key %s has no tenant column: tenant B's row references tenant A's %s row (and a missing one fails with 23503: an existence oracle)", f.name, s.p.byOID[f.refOID].display()), q)
		}
	}
	s.stats(ctx)
	return s.explainCount(ctx)
}

// copyIn tries COPY FROM of a row of tenant A.
func (s *session) copyIn(ctx context.Context, r row) error {
	t := s.t
	var cols, vals []string
	for _, c := range t.columns {
		v, ok := r[c.name]
		if !ok || c.generated {
			continue
		}
		cols = append(cols, pgx.Identifier{c.name}.Sanitize())
		if v == null {
			vals = append(vals, `\N`)
			continue
		}
		vals = append(vals, strings.NewReplacer(`\`, `\\`, "\t", `\t`, "\n", `\n`, "\r", `\r`).Replace(v))
	}
	sql := fmt.Sprintf("COPY %s (%s) FROM STDIN", t.ident(), strings.Join(cols, ", "))
	s.attempts++
	if _, err := s.tx.Exec(ctx, "SAVEPOINT bh_copy"); err != nil {
		return err
	}
	ct, err := s.tx.Conn().PgConn().CopyFrom(ctx, strings.NewReader(strings.Join(vals, "\t")+"\n"), sql)
	if _, rerr := s.tx.Exec(ctx, "ROLLBACK TO SAVEPOINT bh_copy"); rerr != nil {
		return rerr
	}
	if err == nil && ct.RowsAffected() > 0 {
		s.leak("copy-in", "tenant B wrote a row of tenant A with COPY FROM (row-level security refuses COPY FROM to roles it applies to)", sql+" -- "+strings.Join(vals, "\\t"))
	}
	return nil
}

// explainCount compares the rows that row-level security removes for a
// query on tenant A's value with one on a value no tenant has: a
// difference counts A's rows.
func (s *session) explainCount(ctx context.Context) error {
	t := s.t
	tc, _ := t.column(t.tenantCol)
	other := randUUID()
	if tc.base != "uuid" {
		other, _ = synth(t, tc)
	}
	q := func(v string) string {
		return fmt.Sprintf("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, FORMAT JSON) SELECT 1 FROM %s WHERE %s = %s", t.ident(), pgx.Identifier{t.tenantCol}.Sanitize(), literal(tc, v))
	}
	ra, oka := s.removed(ctx, q(s.a))
	rz, okz := s.removed(ctx, q(other))
	if oka && okz && ra != rz {
		s.leak("explain-count", fmt.Sprintf("EXPLAIN ANALYZE shows %.0f rows removed by the filter for tenant A's value and %.0f for a value no tenant has: B counts A's rows", ra, rz), q(s.a))
	}
	return nil
}

// removed runs an EXPLAIN ANALYZE and sums the rows its filters removed.
func (s *session) removed(ctx context.Context, sql string) (float64, bool) {
	o := s.try(ctx, sql, true)
	if !o.ok() {
		return 0, false
	}
	var plans []map[string]any
	if err := json.Unmarshal([]byte(o.text), &plans); err != nil {
		return 0, false
	}
	var sum float64
	var walk func(n map[string]any)
	walk = func(n map[string]any) {
		for _, k := range []string{"Rows Removed by Filter", "Rows Removed by Index Recheck", "Rows Removed by Join Filter"} {
			if v, ok := n[k].(float64); ok {
				sum += v
			}
		}
		if kids, ok := n["Plans"].([]any); ok {
			for _, k := range kids {
				if m, ok := k.(map[string]any); ok {
					walk(m)
				}
			}
		}
	}
	for _, p := range plans {
		if plan, ok := p["Plan"].(map[string]any); ok {
			walk(plan)
		}
	}
	return sum, true
}

// moves tries, as tenant A, to move its row into tenant B or under one of
// B's parent rows.
func (s *session) moves(ctx context.Context, cs canaries) error {
	t := s.t
	id := where(t, cs.a, t.identity(cs.a))
	tc, _ := t.column(t.tenantCol)
	q := fmt.Sprintf("UPDATE %s SET %s = %s WHERE %s", t.ident(), pgx.Identifier{t.tenantCol}.Sanitize(), literal(tc, s.b), id)
	if o := s.try(ctx, q, false); o.ok() && o.rows > 0 {
		s.leak("move-tenant", "tenant A moved its row into tenant B (no WITH CHECK on the tenant column)", q)
	} else {
		// Without WHERE only the UPDATE policies judge the new row (a WHERE
		// brings the SELECT policy in as a check). Tenant A has only its
		// canaries here.
		q = fmt.Sprintf("UPDATE %s SET %s = %s", t.ident(), pgx.Identifier{t.tenantCol}.Sanitize(), literal(tc, s.b))
		if o := s.try(ctx, q, false); o.ok() && o.rows > 0 {
			s.leak("move-tenant", "tenant A moved its rows into tenant B with an UPDATE without WHERE (the UPDATE policy's WITH CHECK lets the tenant change)", q)
		}
	}
	for _, f := range t.fks {
		bp, ok := cs.bParent[f.name]
		if !ok {
			continue
		}
		var set []string
		for i, c := range f.cols {
			col, _ := t.column(c)
			set = append(set, pgx.Identifier{c}.Sanitize()+" = "+literal(col, bp[f.refCols[i]]))
		}
		for _, q := range []string{
			fmt.Sprintf("UPDATE %s SET %s WHERE %s", t.ident(), strings.Join(set, ", "), id),
			fmt.Sprintf("UPDATE %s SET %s", t.ident(), strings.Join(set, ", ")),
		} {
			if o := s.try(ctx, q, false); o.ok() && o.rows > 0 {
				s.leak("move-parent", fmt.Sprintf("tenant A re-parented its row under tenant B's %s row (foreign key %s has no tenant column)", s.p.byOID[f.refOID].display(), f.name), q)
				break
			}
		}
	}
	return nil
}

// stats reports whether the acting role can read the tenant column's
// statistics (most common values, histogram): they name other tenants and
// count their rows. PostgreSQL hides them where row-level security applies
// to the reader, so this fires where it doesn't.
func (s *session) stats(ctx context.Context) {
	t := s.t
	q := fmt.Sprintf("SELECT count(*) FROM pg_catalog.pg_stats WHERE schemaname = %s AND tablename = %s AND attname = %s AND (most_common_vals IS NOT NULL OR histogram_bounds IS NOT NULL)",
		literal(column{typ: "name"}, t.schema), literal(column{typ: "name"}, t.name), literal(column{typ: "name"}, t.tenantCol))
	if o := s.try(ctx, q, true); o.ok() && o.rows > 0 {
		s.leak("stats-visible", "pg_stats shows the tenant column's most common values or histogram to the runtime role: other tenants' ids and their row counts", q)
	}
}

// readOnlyAttacks reads without canaries: rows visible to a tenant that
// has none, or with no or a malformed or forged context.
func (s *session) readOnlyAttacks(ctx context.Context) error {
	t := s.t
	if s.attacker == tenantB {
		s.stats(ctx)
	}
	q := "SELECT count(*) FROM " + t.ident()
	o := s.try(ctx, q, true)
	if o.ok() && o.rows > 0 {
		who := map[string]string{tenantB: "a tenant that has no rows (a fresh random tenant)", noContext: "a transaction with no context",
			malformed: "a malformed context", forged: "a forged context"}[s.attacker]
		s.leak("read-scan", fmt.Sprintf("%s sees %d rows", who, o.rows), q)
	}
	return nil
}
