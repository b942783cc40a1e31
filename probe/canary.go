package probe

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

// row is a canary row: column → text value (cast to the column's type in
// SQL); null marks SQL NULL. Columns not in the map take their defaults.
type row map[string]string

const null = "\x00NULL"

func (r row) clone() row {
	out := row{}
	for k, v := range r {
		out[k] = v
	}
	return out
}

// literal renders v as a typed SQL literal for column c.
func literal(c column, v string) string {
	if v == null {
		return "NULL"
	}
	return "'" + strings.ReplaceAll(v, "'", "''") + "'::" + c.typ
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func randUUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

func randInt() string {
	n, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	return strconv.FormatInt(n.Int64()+1_000_000, 10)
}

var typmodLen = regexp.MustCompile(`\((\d+)\)`)

// synth makes a value for column c of t that its type and the common
// CHECK forms accept, unique enough not to collide with existing rows.
func synth(t *table, c column) (string, error) {
	if vals := t.allowedValues(c.name); len(vals) > 0 {
		return vals[0], nil
	}
	if len(c.enum) > 0 {
		return c.enum[0], nil
	}
	if c.array {
		return "{}", nil
	}
	switch c.base {
	case "uuid":
		return randUUID(), nil
	case "text", "varchar", "bpchar", "citext", "name":
		s := "bhp" + randHex(6)
		if m := typmodLen.FindStringSubmatch(c.typ); m != nil {
			if n, _ := strconv.Atoi(m[1]); n < len(s) {
				s = s[:n]
			}
		}
		return s, nil
	case "int2":
		n, _ := rand.Int(rand.Reader, big.NewInt(30000))
		return strconv.FormatInt(n.Int64()+1, 10), nil
	case "int4", "int8", "numeric", "float4", "float8", "oid":
		return randInt(), nil
	case "bool":
		return "false", nil
	case "timestamptz", "timestamp", "date", "time", "timetz":
		return "now", nil
	case "interval":
		return "1 hour", nil
	case "json", "jsonb":
		return "{}", nil
	case "bytea":
		return `\x` + randHex(16), nil
	case "inet", "cidr":
		return "192.0.2.1", nil
	case "tsvector":
		return "", nil
	case "vector", "halfvec":
		if m := typmodLen.FindStringSubmatch(c.typ); m != nil {
			n, _ := strconv.Atoi(m[1])
			return "[" + strings.TrimSuffix(strings.Repeat("0,", n), ",") + "]", nil
		}
	}
	return "", fmt.Errorf("can't make a canary value of type %s for column %s", c.typ, c.name)
}

// builder makes canary rows and the parent rows their foreign keys need,
// inserting what must exist through write.
type builder struct {
	byOID  map[uint32]*table
	write  func(ctx context.Context, tenant, sql string) error
	stmts  []string        // every canary insert, in order, for reproductions
	exists map[string]bool // rows inserted, by table and full key
}

// insertSQL is the INSERT of r into t.
func insertSQL(t *table, r row) string {
	var cols, vals []string
	override := ""
	for _, c := range t.columns {
		v, ok := r[c.name]
		if !ok {
			continue
		}
		cols = append(cols, pgx.Identifier{c.name}.Sanitize())
		vals = append(vals, literal(c, v))
		if c.identity {
			override = " OVERRIDING SYSTEM VALUE"
		}
	}
	return fmt.Sprintf("INSERT INTO %s (%s)%s VALUES (%s)", t.ident(), strings.Join(cols, ", "), override, strings.Join(vals, ", "))
}

// build returns a row of t in tenant with the fixed values, after making
// sure its parents exist. With insert, the row itself is written too.
func (b *builder) build(ctx context.Context, t *table, tenant string, fixed row, insert bool, depth int) (row, error) {
	if depth > 8 {
		return nil, fmt.Errorf("%s: foreign keys nest deeper than 8 tables (a cycle of NOT NULL references?)", t.display())
	}
	r := fixed.clone()
	if t.tenantCol != "" {
		if _, ok := r[t.tenantCol]; !ok {
			r[t.tenantCol] = tenant
		}
	}
	// Reuse a parent that exists already (a tenants row, say).
	key := t.display() + "|" + keyOf(t, r)
	if !insert && len(t.pk) > 0 && b.exists[key] {
		return r, nil
	}
	for _, f := range t.fks {
		// A nullable column left unset makes the reference NULL (MATCH
		// SIMPLE): no parent needed.
		optional := false
		for _, c := range f.cols {
			col, _ := t.column(c)
			if _, ok := r[c]; !ok && !col.notNull {
				optional = true
			}
		}
		if optional {
			for _, c := range f.cols {
				if _, ok := r[c]; !ok {
					r[c] = null
				}
			}
			continue
		}
		parent, ok := b.byOID[f.refOID]
		if !ok {
			return nil, fmt.Errorf("%s: foreign key %s points to a table outside the probed schemas", t.display(), f.name)
		}
		pf := row{}
		for i, c := range f.cols {
			if v, ok := r[c]; ok {
				pf[f.refCols[i]] = v
			}
		}
		if parent == t && len(pf) == len(f.cols) {
			continue
		}
		pr, err := b.build(ctx, parent, tenant, pf, true, depth+1)
		if err != nil {
			return nil, err
		}
		for i, c := range f.cols {
			r[c] = pr[f.refCols[i]]
		}
	}
	need := map[string]bool{}
	for _, c := range t.pk {
		need[c] = true
	}
	for _, u := range t.uniques {
		for _, c := range u {
			need[c] = true
		}
	}
	for _, c := range t.columns {
		if _, ok := r[c.name]; ok || c.generated {
			continue
		}
		if !(c.notNull && !c.hasDef) && !need[c.name] {
			continue
		}
		v, err := synth(t, c)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.display(), err)
		}
		r[c.name] = v
	}
	if insert {
		key = t.display() + "|" + keyOf(t, r)
		if len(t.pk) > 0 && b.exists[key] {
			return r, nil
		}
		sql := insertSQL(t, r)
		if err := b.write(ctx, tenant, sql); err != nil {
			return nil, fmt.Errorf("write a canary row into %s: %w", t.display(), err)
		}
		b.stmts = append(b.stmts, sql)
		b.exists[key] = true
	}
	return r, nil
}

// keyOf renders r's primary-key values (all of them, or "" if any is unknown).
func keyOf(t *table, r row) string {
	parts := make([]string, 0, len(t.pk))
	for _, c := range t.pk {
		v, ok := r[c]
		if !ok {
			return ""
		}
		parts = append(parts, v)
	}
	return strings.Join(parts, "\x1f")
}

// where renders "col = literal AND ..." over cols of r.
func where(t *table, r row, cols []string) string {
	parts := make([]string, 0, len(cols))
	for _, name := range cols {
		c, _ := t.column(name)
		v := r[name]
		if v == null {
			parts = append(parts, pgx.Identifier{name}.Sanitize()+" IS NULL")
			continue
		}
		parts = append(parts, pgx.Identifier{name}.Sanitize()+" = "+literal(c, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " AND ")
}

// hasAll reports whether every name is in cols.
func hasAll(cols []string, names ...string) bool {
	for _, n := range names {
		if !slices.Contains(cols, n) {
			return false
		}
	}
	return true
}
