package probe

import (
	"errors"

	"context"
	"fmt"
	"github.com/jackc/pgx/v5/pgconn"
	"regexp"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// table is what the probe knows of one table.
type table struct {
	oid         uint32
	schema      string
	name        string
	partitioned bool
	rls, force  bool
	columns     []column
	pk          []string
	uniques     [][]string // unique constraints and indexes other than the primary key
	fks         []fk
	checks      []string
	partitions  []string // leaf partitions, qualified and quoted
	tenantCol   string   // "" when the table has none
}

type column struct {
	name      string
	typ       string // format_type, usable in a cast
	notNull   bool
	hasDef    bool
	generated bool
	identity  bool
	enum      []string
	array     bool
	base      string // element, domain base or own type name (pg_type.typname)
}

type fk struct {
	name    string
	cols    []string
	refOID  uint32
	refCols []string
}

// ident is the table's quoted, schema-qualified name.
func (t *table) ident() string { return pgx.Identifier{t.schema, t.name}.Sanitize() }

// display is the table's name for reports: schema.table, quoted only where needed.
func (t *table) display() string { return quoteIfNeeded(t.schema) + "." + quoteIfNeeded(t.name) }

var plainIdent = regexp.MustCompile(`^[a-z_][a-z0-9_$]*$`)

func quoteIfNeeded(s string) string {
	if plainIdent.MatchString(s) {
		return s
	}
	return pgx.Identifier{s}.Sanitize()
}

func (t *table) column(name string) (column, bool) {
	for _, c := range t.columns {
		if c.name == name {
			return c, true
		}
	}
	return column{}, false
}

const tablesSQL = `
SELECT c.oid, n.nspname, c.relname, c.relkind = 'p', c.relrowsecurity, c.relforcerowsecurity
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_%'
  AND (cardinality($1::text[]) = 0 OR n.nspname = ANY ($1))
ORDER BY n.nspname, c.relname`

const columnsSQL = `
SELECT a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attnotnull, a.atthasdef OR a.attidentity <> '',
       a.attgenerated <> '', a.attidentity <> '', coalesce(ARRAY(SELECT e.enumlabel::text FROM pg_catalog.pg_enum e WHERE e.enumtypid = a.atttypid ORDER BY e.enumsortorder), '{}'),
       t.typcategory = 'A', coalesce(et.typname, bt.typname, t.typname)
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_catalog.pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
WHERE a.attrelid = $1 AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum`

const constraintsSQL = `
SELECT co.conname, co.contype,
       ARRAY(SELECT a.attname::text FROM unnest(co.conkey) WITH ORDINALITY k(n, i) JOIN pg_catalog.pg_attribute a ON a.attrelid = co.conrelid AND a.attnum = k.n ORDER BY k.i),
       co.confrelid,
       ARRAY(SELECT a.attname::text FROM unnest(co.confkey) WITH ORDINALITY k(n, i) JOIN pg_catalog.pg_attribute a ON a.attrelid = co.confrelid AND a.attnum = k.n ORDER BY k.i),
       pg_catalog.pg_get_constraintdef(co.oid)
FROM pg_catalog.pg_constraint co
WHERE co.conrelid = $1 AND co.contype IN ('p', 'u', 'f', 'c')
ORDER BY co.contype, co.conname`

// uniqueIndexesSQL finds unique indexes that are not constraints.
const uniqueIndexesSQL = `
SELECT ARRAY(SELECT a.attname::text FROM unnest(i.indkey) WITH ORDINALITY k(n, o) JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)
FROM pg_catalog.pg_index i
WHERE i.indrelid = $1 AND i.indisunique AND NOT i.indisprimary AND i.indpred IS NULL AND 0 <> ALL (i.indkey)
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_constraint co WHERE co.conindid = i.indexrelid)`

const partitionsSQL = `
SELECT p.relid::regclass::text FROM pg_catalog.pg_partition_tree($1::oid::regclass) p WHERE p.isleaf ORDER BY 1`

// discover reads the tables of schemas (all non-system schemas when
// empty) and their columns and constraints.
func discover(ctx context.Context, q pgx.Tx, schemas []string, tenantCol func(schema, name string) string) ([]*table, error) {
	if schemas == nil {
		schemas = []string{}
	}
	rows, _ := q.Query(ctx, tablesSQL, schemas)
	tables, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*table, error) {
		t := &table{}
		err := r.Scan(&t.oid, &t.schema, &t.name, &t.partitioned, &t.rls, &t.force)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", explainPrivilege(err))
	}
	for _, t := range tables {
		rows, _ := q.Query(ctx, columnsSQL, t.oid)
		t.columns, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (c column, err error) {
			err = r.Scan(&c.name, &c.typ, &c.notNull, &c.hasDef, &c.generated, &c.identity, &c.enum, &c.array, &c.base)
			return
		})
		if err != nil {
			return nil, fmt.Errorf("columns of %s: %w", t.display(), explainPrivilege(err))
		}
		rows, _ = q.Query(ctx, constraintsSQL, t.oid)
		type con struct {
			name, typ string
			cols      []string
			ref       uint32
			refCols   []string
			def       string
		}
		cons, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (c con, err error) {
			err = r.Scan(&c.name, &c.typ, &c.cols, &c.ref, &c.refCols, &c.def)
			return
		})
		if err != nil {
			return nil, fmt.Errorf("constraints of %s: %w", t.display(), explainPrivilege(err))
		}
		for _, c := range cons {
			switch c.typ {
			case "p":
				t.pk = c.cols
			case "u":
				t.uniques = append(t.uniques, c.cols)
			case "f":
				t.fks = append(t.fks, fk{name: c.name, cols: c.cols, refOID: c.ref, refCols: c.refCols})
			case "c":
				t.checks = append(t.checks, c.def)
			}
		}
		rows, _ = q.Query(ctx, uniqueIndexesSQL, t.oid)
		idx, err := pgx.CollectRows(rows, pgx.RowTo[[]string])
		if err != nil {
			return nil, fmt.Errorf("indexes of %s: %w", t.display(), explainPrivilege(err))
		}
		t.uniques = append(t.uniques, idx...)
		if t.partitioned {
			rows, _ = q.Query(ctx, partitionsSQL, t.oid)
			if t.partitions, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
				return nil, fmt.Errorf("partitions of %s: %w", t.display(), explainPrivilege(err))
			}
		}
		want := tenantCol(t.schema, t.name)
		if _, ok := t.column(want); ok {
			t.tenantCol = want
		}
	}
	return tables, nil
}

// allowedValues returns the literals a CHECK constraint allows for col, for
// the common forms "col IN ('a', 'b')" and "col = 'a'", deparsed by
// PostgreSQL as "(col = ANY (ARRAY['a'::text, 'b'::text]))".
func (t *table) allowedValues(col string) []string {
	re := regexp.MustCompile(`^CHECK \(+` + regexp.QuoteMeta(quoteIfNeeded(col)) + ` = (?:ANY \(ARRAY\[)?(.*?)\]?\)+$`)
	lit := regexp.MustCompile(`'((?:[^']|'')*)'`)
	for _, def := range t.checks {
		m := re.FindStringSubmatch(def)
		if m == nil {
			continue
		}
		var out []string
		for _, l := range lit.FindAllStringSubmatch(m[1], -1) {
			out = append(out, strings.ReplaceAll(l[1], "''", "'"))
		}
		if len(out) > 0 {
			return out
		}
	}
	return nil
}

// identity returns the columns that identify a canary row: the primary
// key, or else every column the canary sets.
func (t *table) identity(r row) []string {
	if len(t.pk) > 0 {
		return t.pk
	}
	var out []string
	for _, c := range t.columns {
		if _, ok := r[c.name]; ok {
			out = append(out, c.name)
		}
	}
	return out
}

// fkWithoutTenant reports whether f leaves the tenant column out (so it
// can point into another tenant).
func (t *table) fkWithoutTenant(f fk) bool {
	return t.tenantCol == "" || !slices.Contains(f.cols, t.tenantCol)
}

// explainPrivilege turns a privilege error into ErrPrivilege with the fix.
func explainPrivilege(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w: %s (connect as a role that can read the system catalogs)", ErrPrivilege, pe.Message)
	}
	return err
}
