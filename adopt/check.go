package adopt

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ErrDatabase is wrapped when the database doesn't match the plan or the
// operator's role can't carry it out.
var ErrDatabase = errors.New("database does not fit the plan")

// tableInfo is what the phases need to know about one table.
type tableInfo struct {
	pk         []string
	hasColumn  bool
	hasDefault bool
	notNull    bool
	policies   []string
}

// check compares the plan with the database for the named tenant tables
// (all when names is empty): tables, columns and parents exist, every
// table has a primary key and no policy of its own, and the operator's
// role may alter it. It returns every problem at once.
func check(ctx context.Context, q pgx.Tx, p *Plan, names []string) (map[string]tableInfo, []Table, error) {
	tables, err := pick(p, names)
	if err != nil {
		return nil, nil, err
	}
	var super bool
	if err := q.QueryRow(ctx, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user").Scan(&super); err != nil {
		return nil, nil, fmt.Errorf("read own role: %w", err)
	}
	var errs []error
	info := map[string]tableInfo{}
	for _, t := range tables {
		var ti tableInfo
		var oid uint32
		var mayAlter bool
		err := q.QueryRow(ctx, `SELECT c.oid, pg_has_role(current_user, c.relowner, 'USAGE') FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
  WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r','p')`, p.Schema, t.Name).Scan(&oid, &mayAlter)
		if errors.Is(err, pgx.ErrNoRows) {
			errs = append(errs, fmt.Errorf("table %s.%s does not exist", p.Schema, t.Name))
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("read table %s: %w", t.Name, err)
		}
		if !super && !mayAlter {
			errs = append(errs, fmt.Errorf("table %s: this role is neither a superuser nor a member of the table's owner: it can't alter it", t.Name))
		}
		h, err := hierarchy(ctx, q, oid)
		if err != nil {
			return nil, nil, fmt.Errorf("read table %s: %w", t.Name, err)
		}
		if h != "" {
			errs = append(errs, fmt.Errorf("table %s %s: row-level security applies per table, so a query naming a partition or child table bypasses the parent's policies; adopt does not isolate table hierarchies (leave it out of the plan, or make it global)", t.Name, h))
		}
		var typ string
		err = q.QueryRow(ctx, `SELECT true, a.atthasdef, a.attnotnull, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = $2 AND NOT a.attisdropped`, oid, t.TenantColumn).Scan(&ti.hasColumn, &ti.hasDefault, &ti.notNull, &typ)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return nil, nil, fmt.Errorf("read column %s.%s: %w", t.Name, t.TenantColumn, err)
		}
		if ti.hasColumn && tenantTypeOf(typ) != p.tenantType() {
			errs = append(errs, fmt.Errorf("table %s: column %s is %s, not the plan's tenant_type %s", t.Name, t.TenantColumn, typ, p.tenantType()))
		}
		if t.OwnerColumn != "" {
			var otyp string
			err := q.QueryRow(ctx, `SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = $2 AND NOT a.attisdropped`, oid, t.OwnerColumn).Scan(&otyp)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				errs = append(errs, fmt.Errorf("table %s has no column %s (its owner_column)", t.Name, t.OwnerColumn))
			case err != nil:
				return nil, nil, fmt.Errorf("read column %s.%s: %w", t.Name, t.OwnerColumn, err)
			case otyp != "uuid":
				errs = append(errs, fmt.Errorf("table %s: owner_column %s is %s: kind %s compares it with the entity in context, a uuid", t.Name, t.OwnerColumn, otyp, t.Kind))
			}
		}
		if t.Kind == KindRoom {
			bad, err := checkRoom(ctx, q, p, t, oid)
			if err != nil {
				return nil, nil, err
			}
			errs = append(errs, bad...)
		}
		if !ti.hasColumn && !t.AddColumn {
			errs = append(errs, fmt.Errorf("table %s has no column %s (set add_column: true to have backfill add it)", t.Name, t.TenantColumn))
		}
		if err := q.QueryRow(ctx, `SELECT coalesce(array(SELECT a.attname FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(n, o), pg_attribute a
  WHERE i.indrelid = $1 AND i.indisprimary AND a.attrelid = $1 AND a.attnum = k.n ORDER BY k.o)::text[], '{}')`, oid).Scan(&ti.pk); err != nil {
			return nil, nil, fmt.Errorf("read primary key of %s: %w", t.Name, err)
		}
		if len(ti.pk) == 0 {
			errs = append(errs, fmt.Errorf("table %s has no primary key: batching, resuming and recording row keys need one; add it first", t.Name))
		}
		bad, err := badKeyColumns(ctx, q, t, oid, ti.pk)
		if err != nil {
			return nil, nil, err
		}
		errs = append(errs, bad...)
		if err := q.QueryRow(ctx, `SELECT coalesce(array_agg(polname::text ORDER BY polname), '{}') FROM pg_policy WHERE polrelid = $1 AND polname <> ALL($2)`, oid, policyNames).Scan(&ti.policies); err != nil {
			return nil, nil, fmt.Errorf("read policies of %s: %w", t.Name, err)
		}
		if len(ti.policies) > 0 {
			errs = append(errs, fmt.Errorf("table %s already has policies %v: adopt would OR its policy with them; remove them or leave the table out", t.Name, ti.policies))
		}
		for _, g := range []fillTarget{tenantTarget(t), ownerTarget(t)} {
			for _, r := range g.rules {
				bad, err := checkParent(ctx, q, p, t, g, r, oid)
				if err != nil {
					return nil, nil, err
				}
				errs = append(errs, bad...)
			}
		}
		info[t.Name] = ti
	}
	if len(errs) > 0 {
		return nil, nil, fmt.Errorf("%w: %w", ErrDatabase, errors.Join(errs...))
	}
	return info, tables, nil
}

// checkRoom returns what is wrong with room table t's (oid) room column and
// membership table: both room columns exist with one type, whose equality
// operator is pg_catalog's (the recorder's membership check names it), and
// the membership's entity column is a uuid, like the entity in context.
func checkRoom(ctx context.Context, q pgx.Tx, p *Plan, t Table, oid uint32) ([]error, error) {
	var errs []error
	m := t.Membership
	var roomType, memberRoomType, entityType *string
	var builtinEq bool
	err := q.QueryRow(ctx, `SELECT (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = $1 AND a.attname = $2 AND NOT a.attisdropped),
    (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass($3) AND a.attname = $4 AND NOT a.attisdropped),
    (SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = to_regclass($3) AND a.attname = $5 AND NOT a.attisdropped),
    EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_operator o ON o.oprleft = a.atttypid AND o.oprright = a.atttypid
      WHERE a.attrelid = $1 AND a.attname = $2 AND o.oprname = '=' AND o.oprnamespace = 'pg_catalog'::regnamespace)`,
		oid, t.RoomColumn, qident(p.Schema, m.Table), m.RoomColumn, m.EntityColumn).Scan(&roomType, &memberRoomType, &entityType, &builtinEq)
	if err != nil {
		return nil, fmt.Errorf("read room columns of %s: %w", t.Name, err)
	}
	switch {
	case roomType == nil:
		errs = append(errs, fmt.Errorf("table %s has no column %s (its room_column)", t.Name, t.RoomColumn))
	case memberRoomType == nil:
		errs = append(errs, fmt.Errorf("table %s: membership table %s has no column %s (its room_column)", t.Name, m.Table, m.RoomColumn))
	case *roomType != *memberRoomType:
		errs = append(errs, fmt.Errorf("table %s: room_column %s is %s but %s.%s is %s: the membership test compares them", t.Name, t.RoomColumn, *roomType, m.Table, m.RoomColumn, *memberRoomType))
	case !builtinEq:
		errs = append(errs, fmt.Errorf("table %s: room_column %s is %s, a type without a built-in = operator: adopt compares rooms only with pg_catalog's", t.Name, t.RoomColumn, *roomType))
	}
	switch {
	case entityType == nil:
		errs = append(errs, fmt.Errorf("table %s: membership table %s has no column %s (its entity_column)", t.Name, m.Table, m.EntityColumn))
	case *entityType != "uuid":
		errs = append(errs, fmt.Errorf("table %s: membership entity_column %s.%s is %s: it is compared with the entity in context, a uuid", t.Name, m.Table, m.EntityColumn, *entityType))
	}
	return errs, nil
}

// checkParent returns what is wrong with a parent rule r of g on t (oid):
// the parent must have its key and the column the rule copies, and t the
// column that references it.
func checkParent(ctx context.Context, q pgx.Tx, p *Plan, t Table, g fillTarget, r Rule, oid uint32) ([]error, error) {
	if r.Parent == nil {
		return nil, nil
	}
	var errs []error
	if pcol := g.parentColumn(p, r.Parent); pcol == "" {
		errs = append(errs, fmt.Errorf("table %s rule %s: the plan gives parent %s no %s column: name it in the rule (parent %s_column)", t.Name, r.Name, r.Parent.Table, g.what(), g.what()))
	} else {
		var n int
		if err := q.QueryRow(ctx, `SELECT count(*) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace s ON s.oid = c.relnamespace
  WHERE s.nspname = $1 AND c.relname = $2 AND a.attname = ANY($3) AND NOT a.attisdropped`, p.Schema, r.Parent.Table, []string{r.Parent.key(), pcol}).Scan(&n); err != nil {
			return nil, fmt.Errorf("read parent of rule %s: %w", r.Name, err)
		}
		if n != 2 && !(n == 1 && pcol == r.Parent.key()) {
			errs = append(errs, fmt.Errorf("table %s rule %s: parent %s.%s must have columns %s and %s (the %s it gives)", t.Name, r.Name, p.Schema, r.Parent.Table, r.Parent.key(), pcol, g.what()))
		}
	}
	var has bool
	if err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = $1 AND attname = $2 AND NOT attisdropped)`, oid, r.Parent.Column).Scan(&has); err != nil {
		return nil, fmt.Errorf("read column %s.%s: %w", t.Name, r.Parent.Column, err)
	}
	if !has {
		errs = append(errs, fmt.Errorf("table %s rule %s: no column %s", t.Name, r.Name, r.Parent.Column))
	}
	return errs, nil
}

// pick returns the plan's tenant tables named (all when names is empty).
func pick(p *Plan, names []string) ([]Table, error) {
	if len(names) == 0 {
		return p.TenantTables(), nil
	}
	var out []Table
	for _, n := range names {
		t, ok := p.Table(n)
		if !ok {
			return nil, fmt.Errorf("%w: table %s is not in the plan", ErrPlan, n)
		}
		if !t.isolated() {
			return nil, fmt.Errorf("%w: table %s is %q in the plan: adopt isolates only %s, %s, %s and %s tables", ErrPlan, n, t.Kind, KindTenant, KindOwned, KindPrivate, KindRoom)
		}
		out = append(out, t)
	}
	return out, nil
}

// hierarchy says how table oid is part of a partition or inheritance
// hierarchy ("is partitioned", "is a partition", "has inheritance
// children", "inherits from another table"), or "" when it is not.
func hierarchy(ctx context.Context, q rowQuerier, oid uint32) (string, error) {
	var h string
	err := q.QueryRow(ctx, `SELECT CASE WHEN c.relkind = 'p' THEN 'is partitioned' WHEN c.relispartition THEN 'is a partition'
    WHEN EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhparent = c.oid) THEN 'has inheritance children'
    WHEN EXISTS (SELECT 1 FROM pg_inherits i WHERE i.inhrelid = c.oid) THEN 'inherits from another table' ELSE '' END
  FROM pg_class c WHERE c.oid = $1`, oid).Scan(&h)
	return h, err
}

// refuseTriggers returns an error (ErrDatabase) when t has triggers of its
// own that fire on UPDATE and the plan doesn't accept them firing
// (Table.FireTriggers): backfill and rollback update rows, as the role
// running adopt, which may be a superuser running the application's code.
func refuseTriggers(ctx context.Context, q rowQuerier, p *Plan, t Table) error {
	if t.FireTriggers {
		return nil
	}
	names, err := updateTriggers(ctx, q, qident(p.Schema, t.Name))
	if err != nil {
		return fmt.Errorf("read triggers of %s: %w", t.Name, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("%w: table %s has triggers that fire on UPDATE (%s): adopt's updates of it would fire them, run as this role; set fire_triggers: true in its plan entry to accept that, or disable them while adopt runs", ErrDatabase, t.Name, strings.Join(names, ", "))
	}
	return nil
}

// updateTriggers names the enabled triggers of table q (quoted) that fire
// on UPDATE, other than adopt's own.
func updateTriggers(ctx context.Context, q rowQuerier, table string) ([]string, error) {
	var names []string
	err := q.QueryRow(ctx, `SELECT coalesce(array_agg(tg.tgname::text ORDER BY tg.tgname), '{}') FROM pg_trigger tg
  WHERE tg.tgrelid = $1::regclass AND NOT tg.tgisinternal AND tg.tgenabled IN ('O', 'A') AND (tg.tgtype::int & 16) <> 0 AND tg.tgname <> ALL($2)`,
		table, shadowTriggers).Scan(&names)
	return names, err
}

// badKeyColumns returns what adopt can't handle in t's primary key: a
// comma in a column's name (the shadow recorder gets the key columns as
// one comma-separated trigger argument; the plan's own names can't have
// one), and a column of type json or jsonb (keys are recorded as their
// text and read back by the type's input function, which turns a json
// value into a json string).
func badKeyColumns(ctx context.Context, q rowQuerier, t Table, oid uint32, pk []string) ([]error, error) {
	var errs []error
	for _, c := range pk {
		if strings.Contains(c, ",") {
			errs = append(errs, fmt.Errorf("table %s: column %q has a comma in its name, which the shadow recorder can't take: rename it", t.Name, c))
		}
	}
	var js []string
	err := q.QueryRow(ctx, `SELECT coalesce(array_agg(a.attname::text ORDER BY a.attnum), '{}') FROM pg_attribute a JOIN pg_type ty ON ty.oid = a.atttypid
  WHERE a.attrelid = $1 AND a.attname = ANY($2) AND coalesce(NULLIF(ty.typbasetype, 0), ty.oid) IN ('json'::regtype, 'jsonb'::regtype)`, oid, pk).Scan(&js)
	if err != nil {
		return nil, fmt.Errorf("read key columns of %s: %w", t.Name, err)
	}
	if len(js) > 0 {
		errs = append(errs, fmt.Errorf("table %s: primary key column %s is json: adopt records keys as text, which a json value doesn't survive; not supported", t.Name, strings.Join(js, ", ")))
	}
	return errs, nil
}
