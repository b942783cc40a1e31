package adopt

import (
	"context"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/jackc/pgx/v5"
)

// InspectOptions say what Inspect looks for.
type InspectOptions struct {
	Schema string // default "public"
	// TenantColumns are candidate tenant column names, in preference order
	// (default server_id, tenant_id); the one most tables have wins.
	TenantColumns []string
	// TenantSetting overrides the detected context setting.
	TenantSetting string
	// EntitySetting overrides the detected entity setting (what tables of
	// kind owned and private compare their owner column with).
	EntitySetting string
	RuntimeRole   string // default "<schema>_runtime" ... "app_runtime"
}

// catalog is what Inspect reads: a fixed number of set-based queries.
type catalog struct {
	tables map[string]*catTable
	names  []string
}

type catTable struct {
	name, owner  string
	oid          uint32
	cols         map[string]catColumn
	pk           []string
	fks          []catFK
	indexes      []catIndex
	rls, force   bool
	policies     []string
	nullTenant   int64
	referencedBy int
	hierarchy    string   // see hierarchy; "" when none
	triggers     []string // see updateTriggers
}

type catColumn struct {
	typ     string
	notNull bool
}

type catFK struct {
	cols, refCols []string
	refTable      string
}

type catIndex struct {
	name    string
	cols    []string
	primary bool
	unique  bool
}

func readCatalog(ctx context.Context, conn *pgx.Conn, schema string) (*catalog, error) {
	c := &catalog{tables: map[string]*catTable{}}
	rows, err := conn.Query(ctx, `SELECT c.oid, c.relname, pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relkind IN ('r','p') AND NOT c.relispartition ORDER BY c.relname`, schema)
	if err != nil {
		return nil, fmt.Errorf("read tables of %s: %w", schema, err)
	}
	for rows.Next() {
		t := &catTable{cols: map[string]catColumn{}}
		if err := rows.Scan(&t.oid, &t.name, &t.owner, &t.rls, &t.force); err != nil {
			return nil, fmt.Errorf("read tables: %w", err)
		}
		c.tables[t.name] = t
		c.names = append(c.names, t.name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read tables: %w", err)
	}
	byOID := map[uint32]*catTable{}
	for _, t := range c.tables {
		byOID[t.oid] = t
	}
	oids := make([]uint32, 0, len(byOID))
	for o := range byOID {
		oids = append(oids, o)
	}
	// Columns.
	rows, err = conn.Query(ctx, `SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
  FROM pg_attribute a WHERE a.attrelid = ANY($1) AND a.attnum > 0 AND NOT a.attisdropped`, oids)
	if err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	for rows.Next() {
		var o uint32
		var name string
		var col catColumn
		if err := rows.Scan(&o, &name, &col.typ, &col.notNull); err != nil {
			return nil, fmt.Errorf("read columns: %w", err)
		}
		byOID[o].cols[name] = col
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read columns: %w", err)
	}
	// Indexes (primary key included).
	rows, err = conn.Query(ctx, `SELECT i.indrelid, ic.relname, i.indisprimary, i.indisunique,
    array(SELECT a.attname FROM unnest(i.indkey) WITH ORDINALITY k(n, o) JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.n ORDER BY k.o)::text[]
  FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid WHERE i.indrelid = ANY($1) ORDER BY ic.relname`, oids)
	if err != nil {
		return nil, fmt.Errorf("read indexes: %w", err)
	}
	for rows.Next() {
		var o uint32
		var ix catIndex
		if err := rows.Scan(&o, &ix.name, &ix.primary, &ix.unique, &ix.cols); err != nil {
			return nil, fmt.Errorf("read indexes: %w", err)
		}
		t := byOID[o]
		t.indexes = append(t.indexes, ix)
		if ix.primary {
			t.pk = ix.cols
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read indexes: %w", err)
	}
	// Foreign keys.
	rows, err = conn.Query(ctx, `SELECT k.conrelid, k.confrelid,
    array(SELECT a.attname FROM unnest(k.conkey) WITH ORDINALITY x(n, o) JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = x.n ORDER BY x.o)::text[],
    array(SELECT a.attname FROM unnest(k.confkey) WITH ORDINALITY x(n, o) JOIN pg_attribute a ON a.attrelid = k.confrelid AND a.attnum = x.n ORDER BY x.o)::text[]
  FROM pg_constraint k WHERE k.contype = 'f' AND k.conrelid = ANY($1) ORDER BY k.conname`, oids)
	if err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	for rows.Next() {
		var o, ref uint32
		var fk catFK
		if err := rows.Scan(&o, &ref, &fk.cols, &fk.refCols); err != nil {
			return nil, fmt.Errorf("read foreign keys: %w", err)
		}
		if rt := byOID[ref]; rt != nil {
			fk.refTable = rt.name
			byOID[o].fks = append(byOID[o].fks, fk)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read foreign keys: %w", err)
	}
	// Policies.
	rows, err = conn.Query(ctx, `SELECT p.polrelid, p.polname FROM pg_policy p WHERE p.polrelid = ANY($1) ORDER BY p.polname`, oids)
	if err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	for rows.Next() {
		var o uint32
		var name string
		if err := rows.Scan(&o, &name); err != nil {
			return nil, fmt.Errorf("read policies: %w", err)
		}
		byOID[o].policies = append(byOID[o].policies, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read policies: %w", err)
	}
	sort.Strings(c.names)
	return c, nil
}

var settingUseRE = regexp.MustCompile(`current_setting\(\s*'([a-z_]+\.[a-z_]+)'`)

// settingsInUse lists the custom (prefix.name) settings that function
// bodies, policies, and role or database defaults mention.
func settingsInUse(ctx context.Context, conn *pgx.Conn) ([]string, error) {
	rows, err := conn.Query(ctx, `SELECT p.prosrc FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', '`+StateSchema+`') AND p.prosrc LIKE '%current_setting%'
  UNION ALL SELECT coalesce(pg_get_expr(polqual, polrelid), '') || coalesce(pg_get_expr(polwithcheck, polrelid), '') FROM pg_policy
  UNION ALL SELECT 'current_setting(''' || split_part(s, '=', 1) || '''' FROM pg_db_role_setting, unnest(setconfig) s WHERE s LIKE '%.%=%'`)
	if err != nil {
		return nil, fmt.Errorf("read settings in use: %w", err)
	}
	seen := map[string]bool{}
	for rows.Next() {
		var src string
		if err := rows.Scan(&src); err != nil {
			return nil, fmt.Errorf("read settings in use: %w", err)
		}
		for _, m := range settingUseRE.FindAllStringSubmatch(src, -1) {
			seen[m[1]] = true
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read settings in use: %w", err)
	}
	var out []string
	for s := range seen {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}

// Inspect reads schema's catalog (and counts rows with no tenant) and
// proposes a plan. It never guesses: a table it can't classify, or whose
// missing tenants could come from more than one parent, has Decide set and
// notes saying why. It only reads.
func Inspect(ctx context.Context, conn *pgx.Conn, opts InspectOptions) (*Plan, error) {
	if opts.Schema == "" {
		opts.Schema = "public"
	}
	if len(opts.TenantColumns) == 0 {
		opts.TenantColumns = []string{"server_id", "tenant_id"}
	}
	c, err := readCatalog(ctx, conn, opts.Schema)
	if err != nil {
		return nil, err
	}
	if len(c.names) == 0 {
		return nil, fmt.Errorf("inspect: schema %q has no tables (or this role can't see them)", opts.Schema)
	}
	col, n := "", 0
	for _, cand := range opts.TenantColumns {
		k := 0
		for _, t := range c.tables {
			if _, ok := t.cols[cand]; ok {
				k++
			}
		}
		if k > n {
			col, n = cand, k
		}
	}
	if col == "" {
		return nil, fmt.Errorf("inspect: no table in %s has any of the columns %s: name the tenant column with --tenant-column", opts.Schema, strings.Join(opts.TenantColumns, ", "))
	}
	p := &Plan{Version: 1, Schema: opts.Schema}
	if p.SettingsSeen, err = settingsInUse(ctx, conn); err != nil {
		return nil, err
	}
	p.TenantSetting = opts.TenantSetting
	if p.TenantSetting == "" {
		p.TenantSetting = "app.current_tenant_id"
		for _, s := range p.SettingsSeen {
			if strings.Contains(s, "tenant") || strings.Contains(s, "server") {
				p.TenantSetting = s
				break
			}
		}
	}
	p.EntitySetting = opts.EntitySetting
	for _, s := range p.SettingsSeen {
		if p.EntitySetting != "" {
			break
		}
		if strings.Contains(s, "entity") && s != p.TenantSetting {
			p.EntitySetting = s // what owned and private tables compare with
		}
	}
	p.Runtime.Name = opts.RuntimeRole
	if p.Runtime.Name == "" {
		p.Runtime.Name = "app_runtime"
	}
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", p.Runtime.Name).Scan(&exists); err != nil {
		return nil, fmt.Errorf("inspect roles: %w", err)
	}
	p.Runtime.Create = !exists
	owners := map[string]int{}
	for _, t := range c.tables {
		if _, ok := t.cols[col]; ok {
			owners[t.owner]++
		}
	}
	for o, k := range owners {
		if k > owners[p.Runtime.AppRole] || p.Runtime.AppRole == "" {
			p.Runtime.AppRole = o
		}
	}
	if p.Runtime.AppRole != "" {
		var super, bypass bool
		if err := conn.QueryRow(ctx, "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = $1", p.Runtime.AppRole).Scan(&super, &bypass); err != nil {
			return nil, fmt.Errorf("inspect roles: %w", err)
		}
		p.Runtime.Warning = fmt.Sprintf("the tables are owned by %s: an application connecting as the owner is subject to RLS only because adopt FORCEs it, and can switch FORCE off; connect it as %s", p.Runtime.AppRole, p.Runtime.Name)
		if super || bypass {
			p.Runtime.Warning = fmt.Sprintf("the tables are owned by %s, a superuser or BYPASSRLS role: if the application connects as it, no policy ever applies, FORCE or not; connect it as %s before enforcing", p.Runtime.AppRole, p.Runtime.Name)
		}
	}
	// Count rows with no tenant (one scan per table that has the column).
	for _, name := range c.names {
		t := c.tables[name]
		if _, ok := t.cols[col]; ok {
			q := fmt.Sprintf("SELECT count(*) FROM %s WHERE %s IS NULL", qident(opts.Schema, name), ident(col))
			if err := conn.QueryRow(ctx, q).Scan(&t.nullTenant); err != nil {
				return nil, fmt.Errorf("inspect %s: %w", name, err)
			}
		}
		for _, fk := range t.fks {
			if len(fk.refCols) == 1 && fk.refCols[0] == "id" && len(fk.cols) == 1 && fk.cols[0] == col {
				c.tables[fk.refTable].referencedBy++
			}
		}
	}
	// The tenant type: the supported type most of the columns have (ties:
	// the first by name); uuid when none has one.
	types := map[string]int{}
	for _, t := range c.tables {
		if cc, ok := t.cols[col]; ok {
			types[tenantTypeOf(cc.typ)]++
		}
	}
	p.TenantType = "uuid"
	best := 0
	for _, typ := range rls.TenantTypes() {
		if types[typ] > best {
			p.TenantType, best = typ, types[typ]
		}
	}
	for _, name := range c.names {
		t := c.tables[name]
		if t.hierarchy, err = hierarchy(ctx, conn, t.oid); err != nil {
			return nil, fmt.Errorf("read table %s: %w", name, err)
		}
		if t.triggers, err = updateTriggers(ctx, conn, qident(opts.Schema, name)); err != nil {
			return nil, fmt.Errorf("read triggers of %s: %w", name, err)
		}
		p.Tables = append(p.Tables, proposeTable(c, t, col, p.TenantType))
	}
	return p, nil
}

// membershipCandidates names, for a note, the tables other than table
// that have both a room_id and an entity_id column, or "" when none.
func membershipCandidates(c *catalog, table string) string {
	var out []string
	for _, n := range c.names {
		ct := c.tables[n]
		_, room := ct.cols["room_id"]
		_, ent := ct.cols["entity_id"]
		if n != table && room && ent {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return ""
	}
	return " (candidates: " + strings.Join(out, ", ") + ")"
}

// tenantTypeOf is the tenant type (Plan.TenantType) a column of SQL type
// typ (format_type's spelling) is, or "" when it can be none.
func tenantTypeOf(typ string) string {
	if _, ok := rls.CatalogType(typ); ok {
		return typ
	}
	return ""
}

// proposeTable classifies one table.
func proposeTable(c *catalog, t *catTable, col, tenantType string) Table {
	out := Table{Name: t.name, PrimaryKey: t.pk}
	note := func(format string, a ...any) { out.Notes = append(out.Notes, fmt.Sprintf(format, a...)) }
	// Parents that carry the tenant: FKs of one column to a table having it.
	var parents []ParentRule
	for _, fk := range t.fks {
		rt := c.tables[fk.refTable]
		if len(fk.cols) != 1 || rt == nil || fk.cols[0] == col {
			continue
		}
		if _, ok := rt.cols[col]; ok {
			parents = append(parents, ParentRule{Column: fk.cols[0], Table: rt.name, Key: fk.refCols[0]})
		}
	}
	candidates := func() string {
		var s []string
		for _, pr := range parents {
			s = append(s, fmt.Sprintf("parent %s -> %s.%s", pr.Column, pr.Table, pr.Key))
		}
		return strings.Join(s, ", ")
	}
	_, has := t.cols[col]
	switch {
	case has:
		out.Kind, out.TenantColumn = KindTenant, col
		if typ := t.cols[col].typ; tenantTypeOf(typ) != tenantType {
			out.Decide = true
			note("%s is %s where the plan's tenant_type is %s (one type for every tenant column: the policies compare them all with one context): convert it (from character varying, ALTER COLUMN ... TYPE text rewrites nothing) or make the table global", col, typ, tenantType)
		}
		if t.nullTenant > 0 {
			note("%d rows have no %s", t.nullTenant, col)
			switch len(parents) {
			case 0:
				out.Decide = true
				note("no foreign key leads to a table with %s: write a rule (constant or expression)", col)
			case 1:
				pr := parents[0]
				out.Backfill = []Rule{{Name: "from_" + pr.Table, Parent: &pr}}
			default:
				out.Decide = true
				note("several parents could give the tenant (%s): choose the rules", candidates())
			}
		}
	case len(parents) == 1:
		out.Kind, out.TenantColumn, out.AddColumn = KindTenant, col, true
		pr := parents[0]
		out.Backfill = []Rule{{Name: "from_" + pr.Table, Parent: &pr}}
		note("no %s column: add it and fill it from %s", col, pr.Table)
	case len(parents) > 1:
		out.Decide, out.TenantColumn, out.AddColumn = true, col, true
		note("no %s column; several parents could give the tenant (%s): choose kind and rules", col, candidates())
	case t.referencedBy > 0:
		out.Decide = true
		note("no %s column; %d tables' %s reference it: probably the tenant directory (kind global)", col, t.referencedBy, col)
	default:
		out.Decide = true
		note("no %s column and no foreign key to a tenant table: global, or give it a tenant column and a rule", col)
	}
	if t.hierarchy != "" && (out.Kind == KindTenant || out.Decide) {
		out.Decide = true
		note("%s: row-level security applies per table, and a query naming a partition or child table bypasses the parent's policies; adopt does not isolate table hierarchies: leave it out or make it global", t.hierarchy)
	}
	if len(t.triggers) > 0 && (out.Kind == KindTenant || out.Decide) {
		note("triggers fire on UPDATE (%s): backfill and rollback would fire them, as the role running adopt; set fire_triggers: true to accept that, or disable them while adopt runs", strings.Join(t.triggers, ", "))
	}
	if out.Kind == KindTenant || out.Decide {
		if len(t.pk) == 0 {
			note("no primary key: backfill and enforce refuse this table; add one first")
		} else if t.pk[0] != col && has {
			note("primary key (%s) does not lead with %s: consider (%s, %s) for tenant-leading lookups", strings.Join(t.pk, ", "), col, col, strings.Join(t.pk, ", "))
		}
		for _, ix := range t.indexes {
			if !ix.primary && ix.unique && (len(ix.cols) == 0 || ix.cols[0] != col) {
				note("unique index %s (%s) is an existence oracle across tenants: add %s to it", ix.name, strings.Join(ix.cols, ", "), col)
			}
		}
		for _, name := range []string{"entity_id", "author_id", "owner_id", "user_id"} {
			if _, ok := t.cols[name]; ok {
				note("has %s: kind %s (only that entity writes a row) or %s (only it reads one) with owner_column %s may apply, with the plan's entity_setting; left %s", name, KindOwned, KindPrivate, name, KindTenant)
				break
			}
		}
		if _, ok := t.cols["room_id"]; ok {
			note("has room_id: kind %s (only members of the row's room read it; only its author, a member, writes it) may apply, with owner_column, room_column room_id and a membership table%s; left %s", KindRoom, membershipCandidates(c, t.name), KindTenant)
		}
	}
	if len(t.policies) > 0 || t.rls {
		note("already has row-level security (enabled=%v, policies %s): adopt refuses tables with existing policies", t.rls, strings.Join(t.policies, ", "))
	}
	return out
}
