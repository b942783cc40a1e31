package postgres_test

import (
	"fmt"
	"slices"
	"strings"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/google/uuid"
)

// fresh gives a candidate row a new primary key and new values in its
// unique columns, unless the spec sets them.
func fresh(tb rls.Table, r model.Row, set model.Row, n int) model.Row {
	nr := r.With(nil)
	if _, ok := set["id"]; !ok && slices.Contains(pk(tb), "id") {
		nr["id"] = uuid.NewSHA1(uuid.NameSpaceOID, []byte(fmt.Sprintf("%s/%v/%d", tb.Name, r["id"], n)))
	}
	switch tb.Name {
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

func (v *verifier) exists(tb rls.Table, r model.Row) bool {
	for _, x := range v.fx.Rows[tb.Name] {
		match := true
		for _, c := range pk(tb) {
			if fmt.Sprint(x[c]) != fmt.Sprint(r[c]) {
				match = false
			}
		}
		if match {
			return true
		}
	}
	return false
}

func pkWhere(tb rls.Table, r model.Row, from int) (string, []any) {
	var conds []string
	var args []any
	for i, c := range pk(tb) {
		conds = append(conds, fmt.Sprintf("%s = $%d", c, from+i))
		args = append(args, r[c])
	}
	return strings.Join(conds, " AND "), args
}

func keys(r model.Row) []string {
	cols, _ := columns(r)
	return cols
}

// statements returns every shape on tb with the model's predictions.
func (v *verifier) statements(tb rls.Table) []stmt {
	m := v.m
	q := postgres.Schema + "." + tb.Name
	name := tb.Name
	sp := model.Specs[tb.Name]
	rows := v.fx.Rows[tb.Name]
	var out []stmt
	grantOK := func(cmd string, cols []string) bool { return m.Granted(name, cmd, cols) }

	// SELECT, row by row (both tenants).
	for _, r := range rows {
		r := r
		where, args := pkWhere(tb, r, 1)
		out = append(out, stmt{shape: fmt.Sprintf("SELECT %s %v", name, args), sql: "SELECT 1 FROM " + q + " WHERE " + where, args: args,
			want: func(c model.Caller) outcome {
				if !grantOK("SELECT", nil) {
					return refused()
				}
				if m.Visible(c, name, r) {
					return affected(1)
				}
				return affected(0)
			}})
	}

	// INSERT: plain, RETURNING, ON CONFLICT DO NOTHING; COPY FROM once.
	var template model.Row
	for _, r := range rows {
		if r["tenant_id"] == v.fx.ID("t1", "tenant") || (tb.TenantColumn == "id" && r["id"] == v.fx.ID("t1", "tenant")) {
			template = r
			break
		}
	}
	n := 0
	for _, set := range sp.Inserts {
		set := v.fx.Resolve(set)
		for _, base := range []model.Row{template, rows[len(rows)-1]} { // a t1 row, and a t2 row (another tenant's)
			n++
			nr := fresh(tb, base, set, n)
			if v.exists(tb, nr) {
				continue
			}
			cols, args := columns(nr)
			ins := fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s)", q, strings.Join(cols, ", "), placeholders(len(cols), 1))
			plain := func(c model.Caller) outcome {
				if !grantOK("INSERT", nil) || !m.CanInsert(c, name, nr) {
					return refused()
				}
				return affected(1)
			}
			out = append(out,
				stmt{shape: fmt.Sprintf("INSERT %s %v", name, nr), sql: ins, args: args, want: plain},
				stmt{shape: fmt.Sprintf("INSERT %s ON CONFLICT DO NOTHING %v", name, nr), sql: ins + " ON CONFLICT DO NOTHING", args: args, want: plain},
				stmt{shape: fmt.Sprintf("INSERT %s RETURNING %v", name, nr), sql: ins + " RETURNING *", args: args, want: func(c model.Caller) outcome {
					if !grantOK("SELECT", nil) || !m.Visible(c, name, nr) {
						return refused()
					}
					return plain(c)
				}})
			if n == 1 {
				out = append(out, stmt{shape: "COPY " + name, sql: tb.Name, args: []any{nr}, copy: true, want: func(model.Caller) outcome { return refused() }})
			}
		}
	}

	// UPDATE and DELETE.
	for _, set := range sp.Updates {
		set := v.fx.Resolve(set)
		cols := keys(set)
		setSQL := make([]string, len(cols))
		setArgs := make([]any, len(cols))
		for i, c := range cols {
			setSQL[i] = fmt.Sprintf("%s = $%d", c, i+1)
			setArgs[i] = set[c]
		}
		assign := strings.Join(setSQL, ", ")
		// Blind: UPDATE policies only.
		out = append(out, stmt{shape: fmt.Sprintf("UPDATE %s SET %v (no WHERE)", name, set), sql: "UPDATE " + q + " SET " + assign, args: setArgs,
			want: func(c model.Caller) outcome {
				if !grantOK("UPDATE", cols) {
					return refused()
				}
				k := 0
				for _, r := range rows {
					if m.UpdateUsing(c, name, r) {
						if !m.UpdateCheck(c, name, r.With(set)) {
							return refused()
						}
						k++
					}
				}
				return affected(k)
			}})
		for _, r := range rows {
			r := r
			where, wargs := pkWhere(tb, r, len(cols)+1)
			args := append(append([]any{}, setArgs...), wargs...)
			withWhere := func(c model.Caller) outcome {
				if !grantOK("UPDATE", cols) || !grantOK("SELECT", nil) {
					return refused()
				}
				if !m.Visible(c, name, r) || !m.UpdateUsing(c, name, r) {
					return affected(0)
				}
				nr := r.With(set)
				if !m.UpdateCheck(c, name, nr) || !m.Visible(c, name, nr) {
					return refused()
				}
				return affected(1)
			}
			out = append(out,
				stmt{shape: fmt.Sprintf("UPDATE %s SET %v WHERE %v", name, set, wargs), sql: "UPDATE " + q + " SET " + assign + " WHERE " + where, args: args, want: withWhere},
				stmt{shape: fmt.Sprintf("UPDATE %s SET %v WHERE %v RETURNING", name, set, wargs), sql: "UPDATE " + q + " SET " + assign + " WHERE " + where + " RETURNING *", args: args, want: withWhere})
			// INSERT ... ON CONFLICT DO UPDATE on the existing row.
			prop := r.With(set)
			pcols, pargs := columns(prop)
			excl := make([]string, len(cols))
			for i, c := range cols {
				excl[i] = c + " = EXCLUDED." + c
			}
			out = append(out, stmt{shape: fmt.Sprintf("UPSERT %s %v SET %v", name, wargs, set),
				sql: fmt.Sprintf("INSERT INTO %s (%s) VALUES (%s) ON CONFLICT (%s) DO UPDATE SET %s", q, strings.Join(pcols, ", "), placeholders(len(pcols), 1),
					strings.Join(pk(tb), ", "), strings.Join(excl, ", ")), args: pargs,
				want: func(c model.Caller) outcome {
					if !grantOK("INSERT", nil) || !grantOK("UPDATE", cols) || !grantOK("SELECT", nil) {
						return refused()
					}
					if !m.CanInsert(c, name, prop) || !m.UpdateUsing(c, name, r) || !m.Visible(c, name, r) {
						return refused()
					}
					if !m.UpdateCheck(c, name, prop) || !m.Visible(c, name, prop) {
						return refused()
					}
					return affected(1)
				}})
		}
	}
	out = append(out, stmt{shape: "DELETE " + name + " (no WHERE)", sql: "DELETE FROM " + q, want: func(c model.Caller) outcome {
		if !grantOK("DELETE", nil) {
			return refused()
		}
		k := 0
		for _, r := range rows {
			if m.CanDelete(c, name, r) {
				k++
			}
		}
		return affected(k)
	}})
	for _, r := range rows {
		r := r
		where, args := pkWhere(tb, r, 1)
		del := func(c model.Caller) outcome {
			if !grantOK("DELETE", nil) || !grantOK("SELECT", nil) {
				return refused()
			}
			if m.Visible(c, name, r) && m.CanDelete(c, name, r) {
				return affected(1)
			}
			return affected(0)
		}
		out = append(out,
			stmt{shape: fmt.Sprintf("DELETE %s WHERE %v", name, args), sql: "DELETE FROM " + q + " WHERE " + where, args: args, want: del},
			stmt{shape: fmt.Sprintf("DELETE %s WHERE %v RETURNING", name, args), sql: "DELETE FROM " + q + " WHERE " + where + " RETURNING *", args: args, want: del})
	}
	return out
}
