package adopt

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// ErrCrossTenant is wrapped when rows already point at another tenant's
// row: the foreign key that carries them is left as it is.
var ErrCrossTenant = errors.New("rows reference another tenant's row")

// KeyResult is what Keys did with one foreign key.
type KeyResult struct {
	Table      string `json:"table"`
	Constraint string `json:"constraint"` // the application's foreign key
	References string `json:"references"`
	// Replacement is the tenant-carrying key that replaced it (empty when
	// it was left alone: Note says why).
	Replacement string `json:"replacement,omitempty"`
	Note        string `json:"note,omitempty"`
}

// foreignKey is one single-column foreign key between two tenant tables.
type foreignKey struct {
	ids            keyIDs
	name           string
	child, parent  Table
	col, parentCol string
	def            string // pg_get_constraintdef, every name qualified
	upd, del       byte   // confupdtype, confdeltype
	deferrable     string // "", " DEFERRABLE", " DEFERRABLE INITIALLY DEFERRED"
}

// keyIDs place a foreign key: the child's oid, its column's number and
// the parent's oid.
type keyIDs struct{ child, col, parent uint32 }

// replacement is the name of the tenant-carrying key that replaces fk:
// from the tables and the column, not fk's own oid, so the same key
// re-created by an interrupted undo gets the same replacement.
func (fk foreignKey) replacement() string {
	return fmt.Sprintf("bulkhead_adopt_fk_%d_%d_%d", fk.ids.child, fk.ids.col, fk.ids.parent)
}

// tenantKeyIndex names the unique (tenant, key) index on the table with
// oid: foreign keys need a unique index on the columns they reference.
func tenantKeyIndex(oid uint32) string { return fmt.Sprintf("bulkhead_adopt_tk_%d", oid) }

// Keys makes the foreign keys between the plan's tenant tables carry the
// tenant (for the named child tables; all when names is empty): each
// single-column key child(col) → parent(id) is replaced by child(tenant,
// col) → parent(tenant, id), with the same actions, so that no row can
// point at another tenant's row. Foreign-key checks ignore row-level
// security: without this a tenant can attach its rows to another tenant's
// (whose delete is then blocked, or cascades into them) and probe which
// ids exist in other tenants (the audit's BH702).
//
// Both tables must be backfilled or later. Online: the parent's unique
// (tenant, id) index is built CONCURRENTLY; the new key is added NOT VALID
// (checking new rows at once) in the transaction that drops the old one,
// then validated in its own (a scan that lets writes go on). A key whose
// rows already point at another tenant's row is left alone and reported
// (ErrCrossTenant, with the first keys); the others go on. Resumable: a
// rerun skips what is done, rebuilds an index a kill left invalid, and
// validates a key left unvalidated. Rollback to original undoes it for a
// table (restoring the application's keys exactly), as does UndoKeys.
func Keys(ctx context.Context, conn *pgx.Conn, p *Plan, names []string, o Options) ([]KeyResult, error) {
	o = o.withDefaults()
	var fks []foreignKey
	var results []KeyResult
	err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		children, err := pick(p, names)
		if err != nil {
			return err
		}
		if _, _, err := check(ctx, tx, p, nil); err != nil {
			return err
		}
		if err := installState(ctx, tx, p); err != nil {
			return err
		}
		for _, t := range p.TenantTables() {
			ph, err := phaseOf(ctx, tx, p, t.Name)
			if err != nil {
				return err
			}
			if rank(ph) < rank(PhaseBackfilled) {
				return fmt.Errorf("%w: %s is %s: keys need every tenant table backfilled (its tenant column filled and NOT NULL)", ErrPhase, t.Name, ph)
			}
		}
		fks, results, err = foreignKeys(ctx, tx, p, children)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	var errs []error
	refuse := func(res *KeyResult, err error) {
		res.Note = err.Error()
		errs = append(errs, fmt.Errorf("%s.%s: %w", res.Table, res.Constraint, err))
	}
	indexed := map[string]bool{}
	for _, fk := range fks {
		res := KeyResult{Table: fk.child.Name, Constraint: fk.name, References: fk.parent.Name}
		if !indexed[fk.parent.Name] {
			if err := tenantIndex(ctx, conn, p, fk.parent, o); err != nil {
				return results, fmt.Errorf("keys: %w", err)
			}
			indexed[fk.parent.Name] = true
		}
		switch err := replaceKey(ctx, conn, p, fk, o); {
		case errors.Is(err, ErrCrossTenant):
			refuse(&res, err)
		case err != nil:
			return results, fmt.Errorf("keys: %s.%s: %w", fk.child.Name, fk.name, err)
		default:
			res.Replacement = fk.replacement()
		}
		results = append(results, res)
	}
	// Validate every key added and not validated yet: those added above,
	// and those a kill left (their old key already gone, so not listed).
	pending, err := unvalidated(ctx, conn, p, names)
	if err != nil {
		return results, fmt.Errorf("keys: %w", err)
	}
	for _, k := range pending {
		i := slices.IndexFunc(results, func(r KeyResult) bool { return r.Replacement == k.name })
		if i < 0 {
			results = append(results, KeyResult{Table: k.table, Constraint: k.replaced, References: k.parent, Replacement: k.name, Note: "added by an earlier run, validated on this one"})
			i = len(results) - 1
		}
		switch err := validateKey(ctx, conn, p, k.table, k.name, o); {
		case errors.Is(err, ErrCrossTenant):
			refuse(&results[i], err)
		case err != nil:
			return results, fmt.Errorf("keys: %s.%s: %w", k.table, k.name, err)
		}
	}
	if len(errs) > 0 {
		return results, fmt.Errorf("keys: %w", errors.Join(errs...))
	}
	return results, nil
}

// pendingKey is a tenant-carrying key Keys added but did not validate.
type pendingKey struct{ name, table, parent, replaced string }

// unvalidated lists the keys of the named child tables (all when empty)
// that were added but not validated.
func unvalidated(ctx context.Context, conn *pgx.Conn, p *Plan, names []string) ([]pendingKey, error) {
	tables, err := pick(p, names)
	if err != nil {
		return nil, err
	}
	rels := make([]string, len(tables))
	for i, t := range tables {
		rels[i] = qualified(p, t.Name)
	}
	rows, err := conn.Query(ctx, "SELECT name, rel, parent, replaced FROM "+StateSchema+".keys WHERE kind = 'fk' AND NOT validated AND rel = ANY($1) ORDER BY name", rels)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (pendingKey, error) {
		var k pendingKey
		var rel, parent string
		err := r.Scan(&k.name, &rel, &parent, &k.replaced)
		k.table = strings.TrimPrefix(rel, p.Schema+".")
		k.parent = strings.TrimPrefix(parent, p.Schema+".")
		return k, err
	})
}

// foreignKeys lists the application's single-column foreign keys from
// children to the plan's tenant tables' primary keys, and what can't be
// made tenant-carrying (with the reason).
func foreignKeys(ctx context.Context, tx pgx.Tx, p *Plan, children []Table) ([]foreignKey, []KeyResult, error) {
	var out []foreignKey
	var skipped []KeyResult
	// Every name qualified in the definitions kept for rollback, whatever
	// the search_path then.
	if _, err := tx.Exec(ctx, "SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)"); err != nil {
		return nil, nil, err
	}
	type row struct {
		ids                           keyIDs
		name, parent, col             string
		parentCol, def                string
		onPK                          bool
		upd, del                      string
		deferrable, initiallyDeferred bool
	}
	for _, c := range children {
		rows, err := tx.Query(ctx, `SELECT co.conrelid, co.conkey[1]::int4, co.confrelid, co.conname::text, pc.relname::text, a.attname::text, coalesce(pa.attname::text, ''),
  pg_get_constraintdef(co.oid),
  EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = co.confrelid AND i.indisprimary AND i.indnkeyatts = 1 AND i.indkey[0] = co.confkey[1]),
  co.confupdtype::text, co.confdeltype::text, co.condeferrable, co.condeferred
FROM pg_constraint co
JOIN pg_class pc ON pc.oid = co.confrelid
JOIN pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = co.conkey[1]
LEFT JOIN pg_attribute pa ON pa.attrelid = co.confrelid AND pa.attnum = co.confkey[1] AND array_length(co.confkey, 1) = 1
WHERE co.contype = 'f' AND co.conrelid = $1::regclass AND co.conname NOT LIKE 'bulkhead\_adopt\_%'
  AND pc.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = $2)
ORDER BY co.conname`, qident(p.Schema, c.Name), p.Schema)
		if err != nil {
			return nil, nil, fmt.Errorf("read foreign keys of %s: %w", c.Name, err)
		}
		found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
			var x row
			err := r.Scan(&x.ids.child, &x.ids.col, &x.ids.parent, &x.name, &x.parent, &x.col, &x.parentCol, &x.def, &x.onPK, &x.upd, &x.del, &x.deferrable, &x.initiallyDeferred)
			return x, err
		})
		if err != nil {
			return nil, nil, fmt.Errorf("read foreign keys of %s: %w", c.Name, err)
		}
		for _, r := range found {
			parent, ok := p.Table(r.parent)
			if !ok || !parent.isolated() || r.col == c.TenantColumn {
				continue // to a global table, or the tenant column's own key
			}
			skip := func(why string) {
				skipped = append(skipped, KeyResult{Table: c.Name, Constraint: r.name, References: r.parent, Note: why})
			}
			switch {
			case r.parentCol == "": // NULL unless the key has one column
				skip("a key of several columns: left to the operator")
				continue
			case !r.onPK:
				skip("references a unique key, not the primary key: left to the operator")
				continue
			case r.upd == "n" || r.upd == "d":
				skip("ON UPDATE SET NULL/DEFAULT would also clear the tenant column: left to the operator")
				continue
			}
			fk := foreignKey{ids: r.ids, name: r.name, child: c, parent: parent, col: r.col, parentCol: r.parentCol, def: r.def, upd: r.upd[0], del: r.del[0]}
			if r.deferrable {
				fk.deferrable = " DEFERRABLE"
				if r.initiallyDeferred {
					fk.deferrable += " INITIALLY DEFERRED"
				}
			}
			out = append(out, fk)
		}
	}
	return out, skipped, nil
}

// tenantIndex makes sure parent has its unique (tenant, primary key)
// index, built CONCURRENTLY (outside a transaction; an index a kill left
// invalid is dropped and built again), and recorded for rollback.
func tenantIndex(ctx context.Context, conn *pgx.Conn, p *Plan, parent Table, o Options) error {
	q := qident(p.Schema, parent.Name)
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT $1::regclass::oid", q).Scan(&oid); err != nil {
		return err
	}
	pk, err := primaryKey(ctx, conn, q)
	if err != nil {
		return err
	}
	name := tenantKeyIndex(oid)
	qname := qident(p.Schema, name)
	var valid *bool
	err = conn.QueryRow(ctx, `SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass($1)`, qname).Scan(&valid)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("read index %s: %w", name, err)
	}
	if valid != nil && !*valid {
		if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+qname); err != nil {
			return fmt.Errorf("drop invalid index %s: %w", name, err)
		}
		valid = nil
	}
	if valid == nil {
		cols := []string{ident(parent.TenantColumn)}
		for _, c := range pk {
			cols = append(cols, ident(c))
		}
		// Recorded first: a kill during the build leaves an invalid index
		// that a rerun rebuilds and rollback drops.
		if _, err := conn.Exec(ctx, "INSERT INTO "+StateSchema+".keys (name, kind, rel) VALUES ($1, 'index', $2) ON CONFLICT (name) DO NOTHING", name, qualified(p, parent.Name)); err != nil {
			return fmt.Errorf("record index %s: %w", name, err)
		}
		if err := buildConcurrently(ctx, conn, fmt.Sprintf("CREATE UNIQUE INDEX CONCURRENTLY %s ON %s (%s)", ident(name), q, strings.Join(cols, ", ")), qname, o); err != nil {
			return fmt.Errorf("build index %s on %s: %w", name, parent.Name, err)
		}
	}
	return nil
}

// buildConcurrently runs create (a CREATE INDEX CONCURRENTLY of index
// qname) with the options' lock_timeout, retrying like withTx; the
// invalid index a failed build leaves is dropped first.
func buildConcurrently(ctx context.Context, conn *pgx.Conn, create, qname string, o Options) error {
	var err error
	for attempt := 0; attempt <= o.Retries; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 50 * time.Millisecond)
			if _, err := conn.Exec(ctx, "DROP INDEX CONCURRENTLY IF EXISTS "+qname); err != nil {
				return err
			}
		}
		if _, err = conn.Exec(ctx, fmt.Sprintf("SET lock_timeout = '%dms'", o.LockTimeout.Milliseconds())); err != nil {
			return err
		}
		_, err = conn.Exec(ctx, create)
		if _, rerr := conn.Exec(ctx, "RESET lock_timeout"); err == nil {
			err = rerr
		}
		if !retryable(err) {
			return err
		}
	}
	return fmt.Errorf("gave up after %d lock timeouts or deadlocks: %w", o.Retries+1, err)
}

// action is a referential action clause for confupdtype/confdeltype c;
// SET NULL and SET DEFAULT on delete name the key column only, so the
// tenant column is never cleared.
func action(on string, c byte, col string) string {
	switch c {
	case 'r':
		return " ON " + on + " RESTRICT"
	case 'c':
		return " ON " + on + " CASCADE"
	case 'n':
		return " ON " + on + " SET NULL (" + ident(col) + ")"
	case 'd':
		return " ON " + on + " SET DEFAULT (" + ident(col) + ")"
	}
	return "" // NO ACTION
}

// replaceKey replaces fk with its tenant-carrying form, added NOT VALID
// (it checks new rows at once) in the transaction that drops fk; Keys
// validates it after. It refuses with ErrCrossTenant when rows already
// point at another tenant's row. fk being listed means it was not
// replaced yet: the replacement is added and fk dropped in one
// transaction. A row left by an undo a kill cut short (kind restored: fk
// re-added, not yet validated) is taken over, keeping the definition it
// recorded first.
func replaceKey(ctx context.Context, conn *pgx.Conn, p *Plan, fk foreignKey, o Options) error {
	cq, pq := qident(p.Schema, fk.child.Name), qident(p.Schema, fk.parent.Name)
	name := fk.replacement()
	var n int64
	var first []string
	// The values as their type's output (format's %s), never through a
	// cast the owner of the column's type may have defined.
	err := conn.QueryRow(ctx, fmt.Sprintf(`SELECT count(*), coalesce((array_agg(pg_catalog.format('%%s', c.%s) ORDER BY pg_catalog.format('%%s', c.%s)))[1:5], '{}')
  FROM %s c JOIN %s r ON r.%s = c.%s WHERE c.%s IS DISTINCT FROM r.%s`,
		ident(fk.col), ident(fk.col), cq, pq, ident(fk.parentCol), ident(fk.col), ident(fk.child.TenantColumn), ident(fk.parent.TenantColumn))).Scan(&n, &first)
	if err != nil {
		return fmt.Errorf("look for cross-tenant references: %w", err)
	}
	if n > 0 {
		return fmt.Errorf("%w: %d rows of %s point through %s at a row of %s with another %s (values of %s: %s); fix or delete them, then run keys again",
			ErrCrossTenant, n, fk.child.Name, fk.col, fk.parent.Name, fk.parent.TenantColumn, fk.col, strings.Join(first, ", "))
	}
	return withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		stmt := fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s FOREIGN KEY (%s, %s) REFERENCES %s (%s, %s)%s%s%s NOT VALID",
			cq, ident(name), ident(fk.child.TenantColumn), ident(fk.col), pq, ident(fk.parent.TenantColumn), ident(fk.parentCol),
			action("UPDATE", fk.upd, fk.col), action("DELETE", fk.del, fk.col), fk.deferrable)
		if _, err := tx.Exec(ctx, stmt); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO "+StateSchema+`.keys (name, kind, rel, parent, replaced, replaced_def) VALUES ($1, 'fk', $2, $3, $4, $5)
  ON CONFLICT (name) DO UPDATE SET kind = 'fk', validated = false`,
			name, qualified(p, fk.child.Name), qualified(p, fk.parent.Name), fk.name, fk.def); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT %s", cq, ident(fk.name)))
		return err
	})
}

// validateKey validates the tenant-carrying key name on table (a scan
// that lets writes go on) and records it.
func validateKey(ctx context.Context, conn *pgx.Conn, p *Plan, table, name string, o Options) error {
	cq := qident(p.Schema, table)
	return withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", cq, ident(name))); err != nil {
			if sqlState(err) == "23503" { // written since the look above; the new key already refuses more
				return fmt.Errorf("%w: validate %s: %v; fix or delete those rows, then run keys again", ErrCrossTenant, name, err)
			}
			return fmt.Errorf("validate %s: %w", name, err)
		}
		_, err := tx.Exec(ctx, "UPDATE "+StateSchema+".keys SET validated = true WHERE name = $1", name)
		return err
	})
}

// UndoKeys restores the application's foreign keys that Keys replaced on
// the named tables (as child or parent; all when names is empty), exactly
// as they were defined, and drops the indexes Keys built on them.
func UndoKeys(ctx context.Context, conn *pgx.Conn, p *Plan, names []string, o Options) error {
	o = o.withDefaults()
	tables, err := pick(p, names)
	if err != nil {
		return err
	}
	for _, t := range tables {
		if err := undoKeysOf(ctx, conn, p, t, o); err != nil {
			return err
		}
	}
	return nil
}

// undoKeysOf undoes Keys for every key involving table t: each replaced
// foreign key comes back (NOT VALID in the transaction that drops its
// replacement, then validated if it was valid), then t's index goes.
// Nothing to undo (no state schema, no keys) is not an error.
func undoKeysOf(ctx context.Context, conn *pgx.Conn, p *Plan, t Table, o Options) error {
	if ok, err := stateTableExists(ctx, conn, "keys"); err != nil || !ok {
		return err
	}
	rel := qualified(p, t.Name)
	rows, err := conn.Query(ctx, "SELECT name, kind, rel, replaced, replaced_def FROM "+StateSchema+".keys WHERE kind IN ('fk', 'restored') AND (rel = $1 OR parent = $1) ORDER BY name", rel)
	if err != nil {
		return err
	}
	type fkRow struct{ name, kind, rel, replaced, def string }
	fks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (fkRow, error) {
		var x fkRow
		err := r.Scan(&x.name, &x.kind, &x.rel, &x.replaced, &x.def)
		return x, err
	})
	if err != nil {
		return err
	}
	for _, r := range fks {
		child := qident(strings.SplitN(r.rel, ".", 2)...)
		def, notValid := strings.CutSuffix(r.def, " NOT VALID")
		if r.kind == "fk" { // else restored already; a kill came before its validation
			err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
				stmts := []string{
					fmt.Sprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID", child, ident(r.replaced), def),
					fmt.Sprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", child, ident(r.name)),
				}
				if err := execAll(ctx, tx, stmts); err != nil {
					return err
				}
				_, err := tx.Exec(ctx, "UPDATE "+StateSchema+".keys SET kind = 'restored' WHERE name = $1", r.name)
				return err
			})
			if err != nil {
				return fmt.Errorf("restore %s on %s: %w", r.replaced, r.rel, err)
			}
		}
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			if !notValid {
				if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", child, ident(r.replaced))); err != nil {
					return err
				}
			}
			_, err := tx.Exec(ctx, "DELETE FROM "+StateSchema+".keys WHERE name = $1", r.name)
			return err
		})
		if err != nil {
			return fmt.Errorf("validate %s on %s: %w", r.replaced, r.rel, err)
		}
	}
	rows, err = conn.Query(ctx, "SELECT name FROM "+StateSchema+".keys WHERE kind = 'index' AND rel = $1", rel)
	if err != nil {
		return err
	}
	idx, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return err
	}
	for _, name := range idx {
		err := withTx(ctx, conn, o.LockTimeout, o.Retries, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "DROP INDEX IF EXISTS "+qident(p.Schema, name)); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "DELETE FROM "+StateSchema+".keys WHERE name = $1", name)
			return err
		})
		if err != nil {
			return fmt.Errorf("drop index %s: %w", name, err)
		}
	}
	return nil
}
