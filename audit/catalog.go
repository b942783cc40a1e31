package audit

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/jackc/pgx/v5"
)

// The snapshot is everything the checks look at, read with a fixed number
// of set-based catalog queries (none per table), so the audit's cost grows
// with the catalog's size, not with round trips.

type role struct {
	oid                              uint32
	name                             string
	super, bypass, login, createrole bool
	runtimeMember                    bool // the runtime role is a member (can SET ROLE to it), or is it
	loginMembers                     bool // a non-superuser login role other than itself is a member
}

type rel struct {
	oid                   uint32
	schema, name, kind    string
	owner                 uint32
	rls, force, partition bool
	parent                uint32
	options               string
	publicPrivs           string
	sel, ins, upd, del    bool // the runtime role's effective privileges
	truncate, refs, trig  bool
	grantOption           string
	cols                  []*column
	tenantAtt             int16
	tenant                bool
	policies              []*policy
}

func (r *rel) qname() string { return r.schema + "." + r.name }

func (r *rel) obj() Object { return Object{Kind: "table", Schema: r.schema, Table: r.name} }

func (r *rel) col(num int16) string {
	for _, c := range r.cols {
		if c.num == num {
			return c.name
		}
	}
	return fmt.Sprint(num)
}

type column struct {
	num     int16
	name    string
	notNull bool
	typ     string
}

type policy struct {
	oid                uint32
	rel                *rel
	name, cmd          string
	permissive         bool
	roles              []uint32
	using, check       string // deparsed
	usingTree, chkTree any
	funcs              []uint32 // functions the policy depends on (pg_depend)
}

func (p *policy) obj() Object {
	return Object{Kind: "policy", Schema: p.rel.schema, Table: p.rel.name, Name: p.name}
}

// appliesTo reports whether the policy applies to a role with these
// memberships (PUBLIC = 0 applies to all).
func (p *policy) appliesToRuntime(s *snapshot) bool {
	for _, r := range p.roles {
		if r == 0 {
			return true
		}
		if ro := s.roles[r]; ro != nil && ro.runtimeMember {
			return true
		}
	}
	return false
}

type function struct {
	oid                uint32
	schema, name, args string
	argNames, argTypes []string
	lang               string
	definer, leakproof bool
	volatile           string
	config             []string
	src                string
	lib                string // probin: a C function's library
	owner              uint32
	ext                bool
	publicExec         bool
	runtimeExec        bool
}

func (f *function) qname() string { return f.schema + "." + f.name }

func (f *function) obj() Object {
	return Object{Kind: "function", Schema: f.schema, Name: f.name + "(" + f.args + ")"}
}

func (f *function) searchPath() (string, bool) {
	for _, c := range f.config {
		if v, ok := strings.CutPrefix(c, "search_path="); ok {
			return v, true
		}
	}
	return "", false
}

type index struct {
	oid             uint32
	rel             *rel
	name, am        string
	unique, primary bool
	keys            []int16
	exprs           bool
	pred, def       string
}

type constraint struct {
	name, typ string
	rel       *rel
	keys      []int16
	frel      uint32
	fkeys     []int16
}

type trigger struct {
	name string
	rel  *rel
	fn   uint32
}

type rule struct {
	name, event string
	rel         *rel
}

type schemaInfo struct {
	oid                         uint32
	name                        string
	owner                       uint32
	runtimeCreate, publicCreate bool
}

type setting struct {
	name, value, context, source, reset string
}

type dbRoleSetting struct {
	database, role, name, value string
}

type snapshot struct {
	opts                 Options
	versionNum           int
	version, currentUser string
	database             string
	runtime              string
	runtimeTemp          bool
	notes                []string
	failed               map[string]string // source -> reason

	roles        map[uint32]*role
	rels         map[uint32]*rel
	relByName    map[string]*rel
	tenant       []*rel
	policies     []*policy
	funcs        map[uint32]*function
	funcByName   map[string][]*function // "schema.name" and "name"
	builtins     map[string]bool        // names of pg_catalog functions and relations
	treeFuncs    map[uint32]*function   // functions referenced by policy trees (incl. pg_catalog)
	indexes      []*index
	constraints  []*constraint
	triggers     []*trigger
	rules        []*rule
	viewDeps     map[uint32][]uint32
	pubs         []pubRel
	dbRole       []dbRoleSetting
	settings     map[string]setting
	schemas      map[uint32]*schemaInfo
	schemaByName map[string]*schemaInfo
	seqs         []seqUse
	unreachable  []string

	sessionValues    map[string]string // context setting -> value in the audit's fresh session
	fileSettings     map[string]string // context setting -> value (file:line) from pg_file_settings
	fileSettingsRead bool
	statsExtFixed    bool // pg_stats_ext(_exprs) show rows to table owners only
}

type pubRel struct {
	pub string
	rel uint32
}

type seqUse struct {
	table uint32
	seq   string
}

const userSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') AND n.nspname NOT LIKE 'pg\_temp\_%' AND n.nspname NOT LIKE 'pg\_toast\_temp\_%'`

// source names of the catalog reads.
const (
	srcRoles       = "roles"
	srcRels        = "relations"
	srcColumns     = "columns"
	srcPolicies    = "policies"
	srcFuncs       = "functions"
	srcIndexes     = "indexes"
	srcConstraints = "constraints"
	srcTriggers    = "triggers"
	srcRules       = "rules"
	srcViews       = "view dependencies"
	srcPubs        = "publications"
	srcDBRole      = "role and database settings"
	srcSettings    = "server settings"
	srcSchemas     = "schemas"
	srcSeqs        = "sequences"
)

// read runs one catalog read in a savepoint: a failure marks the source
// as unavailable (its checks are Skipped) instead of ending the audit.
func (s *snapshot) read(ctx context.Context, tx pgx.Tx, src string, fn func(pgx.Tx) error) {
	sp, err := tx.Begin(ctx)
	if err == nil {
		err = fn(sp)
		if err == nil {
			err = sp.Commit(ctx)
		} else {
			sp.Rollback(ctx)
		}
	}
	if err != nil {
		reason := err.Error()
		if sqlState(err) == "42501" {
			reason = "no privilege to read the catalog: " + reason
		}
		s.failed[src] = reason
	}
}

func load(ctx context.Context, tx pgx.Tx, opts Options) (*snapshot, error) {
	s := &snapshot{
		opts: opts, failed: map[string]string{}, roles: map[uint32]*role{}, rels: map[uint32]*rel{},
		relByName: map[string]*rel{}, funcs: map[uint32]*function{}, funcByName: map[string][]*function{},
		builtins: map[string]bool{}, treeFuncs: map[uint32]*function{}, viewDeps: map[uint32][]uint32{},
		settings: map[string]setting{}, schemas: map[uint32]*schemaInfo{}, schemaByName: map[string]*schemaInfo{},
		runtime: opts.RuntimeRole,
	}
	err := tx.QueryRow(ctx, `SELECT current_setting('server_version_num')::int, current_setting('server_version'), current_user::text, current_database()::text`).
		Scan(&s.versionNum, &s.version, &s.currentUser, &s.database)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoCatalog, err)
	}
	if opts.serverVersion != 0 {
		s.versionNum = opts.serverVersion
	}
	// who is the role the privilege functions ask about
	who := s.currentUser
	if s.runtime != "" {
		var exists bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = $1)`, s.runtime).Scan(&exists); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrNoCatalog, err)
		}
		if !exists {
			return nil, fmt.Errorf("audit: runtime role %q does not exist in this cluster (role names are case-sensitive)", s.runtime)
		}
		who = s.runtime
		if err := tx.QueryRow(ctx, `SELECT has_database_privilege($1, current_database(), 'TEMP')`, who).Scan(&s.runtimeTemp); err != nil {
			s.failed[srcSchemas] = err.Error()
		}
	}

	s.read(ctx, tx, srcRoles, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `SELECT r.oid, r.rolname::text, r.rolsuper, r.rolbypassrls, r.rolcanlogin, r.rolcreaterole, pg_has_role($1, r.oid, 'MEMBER'),
			EXISTS (SELECT 1 FROM pg_catalog.pg_auth_members am JOIN pg_catalog.pg_roles m ON m.oid = am.member
			        WHERE m.rolcanlogin AND NOT m.rolsuper AND m.oid <> r.oid AND pg_has_role(m.oid, r.oid, 'MEMBER'))
			FROM pg_catalog.pg_roles r`, who)
		if err != nil {
			return err
		}
		var r role
		_, err = pgx.ForEachRow(rows, []any{&r.oid, &r.name, &r.super, &r.bypass, &r.login, &r.createrole, &r.runtimeMember, &r.loginMembers}, func() error {
			c := r
			s.roles[c.oid] = &c
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcRels, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT c.oid, n.nspname::text, c.relname::text, c.relkind::text, c.relowner, c.relrowsecurity, c.relforcerowsecurity, c.relispartition,
  coalesce((SELECT i.inhparent FROM pg_catalog.pg_inherits i WHERE i.inhrelid = c.oid LIMIT 1), 0),
  coalesce(array_to_string(c.reloptions, ','), ''),
  coalesce((SELECT string_agg(a.privilege_type, ',' ORDER BY a.privilege_type) FROM aclexplode(c.relacl) a WHERE a.grantee = 0), ''),
  c.relkind NOT IN ('S') AND has_any_column_privilege($1, c.oid, 'SELECT'),
  c.relkind NOT IN ('S') AND has_any_column_privilege($1, c.oid, 'INSERT'),
  c.relkind NOT IN ('S') AND has_any_column_privilege($1, c.oid, 'UPDATE'),
  c.relkind NOT IN ('S') AND has_table_privilege($1, c.oid, 'DELETE'),
  c.relkind NOT IN ('S') AND has_table_privilege($1, c.oid, 'TRUNCATE'),
  c.relkind NOT IN ('S') AND has_any_column_privilege($1, c.oid, 'REFERENCES'),
  c.relkind NOT IN ('S') AND has_table_privilege($1, c.oid, 'TRIGGER'),
  coalesce((SELECT string_agg(DISTINCT a.privilege_type, ',') FROM aclexplode(c.relacl) a
            WHERE a.is_grantable AND a.grantee <> 0 AND a.grantee <> c.relowner AND pg_has_role($1, a.grantee, 'USAGE')), '')
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND `+userSchemas, who)
		if err != nil {
			return err
		}
		var r rel
		_, err = pgx.ForEachRow(rows, []any{&r.oid, &r.schema, &r.name, &r.kind, &r.owner, &r.rls, &r.force, &r.partition, &r.parent, &r.options,
			&r.publicPrivs, &r.sel, &r.ins, &r.upd, &r.del, &r.truncate, &r.refs, &r.trig, &r.grantOption}, func() error {
			c := r
			s.rels[c.oid] = &c
			s.relByName[c.qname()] = &c
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcColumns, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT a.attrelid, a.attnum, a.attname::text, a.attnotnull, format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON c.oid = a.attrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND `+userSchemas+`
ORDER BY a.attrelid, a.attnum`)
		if err != nil {
			return err
		}
		var relid uint32
		var c column
		_, err = pgx.ForEachRow(rows, []any{&relid, &c.num, &c.name, &c.notNull, &c.typ}, func() error {
			if r := s.rels[relid]; r != nil {
				cc := c
				r.cols = append(r.cols, &cc)
				if cc.name == opts.TenantColumn {
					r.tenantAtt = cc.num
				}
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcPolicies, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT p.oid, p.polrelid, p.polname::text, p.polcmd::text, p.polpermissive, p.polroles::oid[],
  coalesce(pg_get_expr(p.polqual, p.polrelid), ''), coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''),
  coalesce(p.polqual::text, ''), coalesce(p.polwithcheck::text, '')
FROM pg_catalog.pg_policy p ORDER BY p.polrelid, p.polname`)
		if err != nil {
			return err
		}
		var p policy
		var relid uint32
		var ut, ct string
		_, err = pgx.ForEachRow(rows, []any{&p.oid, &relid, &p.name, &p.cmd, &p.permissive, &p.roles, &p.using, &p.check, &ut, &ct}, func() error {
			r := s.rels[relid]
			if r == nil {
				return nil
			}
			c := p
			c.rel = r
			if ut != "" {
				if c.usingTree, err = parseNodeTree(ut); err != nil {
					s.notes = append(s.notes, fmt.Sprintf("policy %s: %v", c.obj(), err))
				}
			}
			if ct != "" {
				if c.chkTree, err = parseNodeTree(ct); err != nil {
					s.notes = append(s.notes, fmt.Sprintf("policy %s: %v", c.obj(), err))
				}
			}
			r.policies = append(r.policies, &c)
			s.policies = append(s.policies, &c)
			return nil
		})
		if err != nil {
			return err
		}
		byOID := map[uint32]*policy{}
		for _, p := range s.policies {
			byOID[p.oid] = p
		}
		rows, err = q.Query(ctx, `SELECT d.objid, d.refobjid FROM pg_catalog.pg_depend d
			WHERE d.classid = 'pg_catalog.pg_policy'::regclass AND d.refclassid = 'pg_catalog.pg_proc'::regclass ORDER BY 1, 2`)
		if err != nil {
			return err
		}
		var pol, fn uint32
		_, err = pgx.ForEachRow(rows, []any{&pol, &fn}, func() error {
			if p := byOID[pol]; p != nil {
				p.funcs = append(p.funcs, fn)
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcFuncs, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT p.oid, n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), coalesce(p.proargnames, '{}')::text[],
  ARRAY(SELECT format_type(t.x, NULL) FROM unnest(p.proargtypes) WITH ORDINALITY AS t(x, i) ORDER BY t.i),
  l.lanname::text, p.prosecdef, p.proleakproof, p.provolatile::text, coalesce(p.proconfig, '{}'), coalesce(p.prosrc, ''), coalesce(p.probin, ''), p.proowner,
  EXISTS (SELECT 1 FROM pg_catalog.pg_depend d WHERE d.classid = 'pg_catalog.pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'),
  p.proacl IS NULL OR EXISTS (SELECT 1 FROM aclexplode(p.proacl) a WHERE a.grantee = 0 AND a.privilege_type = 'EXECUTE'),
  has_function_privilege($1, p.oid, 'EXECUTE') AND has_schema_privilege($1, n.oid, 'USAGE')
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace JOIN pg_catalog.pg_language l ON l.oid = p.prolang
WHERE p.prokind IN ('f', 'p') AND `+userSchemas, who)
		if err != nil {
			return err
		}
		var f function
		_, err = pgx.ForEachRow(rows, []any{&f.oid, &f.schema, &f.name, &f.args, &f.argNames, &f.argTypes, &f.lang, &f.definer, &f.leakproof,
			&f.volatile, &f.config, &f.src, &f.lib, &f.owner, &f.ext, &f.publicExec, &f.runtimeExec}, func() error {
			c := f
			s.funcs[c.oid] = &c
			s.funcByName[c.qname()] = append(s.funcByName[c.qname()], &c)
			s.funcByName[c.name] = append(s.funcByName[c.name], &c)
			return nil
		})
		if err != nil {
			return err
		}
		rows, err = q.Query(ctx, `SELECT proname::text FROM pg_catalog.pg_proc WHERE pronamespace = 'pg_catalog'::regnamespace
			UNION SELECT relname::text FROM pg_catalog.pg_class WHERE relnamespace = 'pg_catalog'::regnamespace`)
		if err != nil {
			return err
		}
		var name string
		_, err = pgx.ForEachRow(rows, []any{&name}, func() error { s.builtins[name] = true; return nil })
		return err
	})

	// Functions the policy trees call, wherever they live (volatility).
	if _, ok := s.failed[srcPolicies]; !ok {
		var ids []uint32
		seen := map[string]bool{}
		for _, p := range s.policies {
			for _, t := range []any{p.usingTree, p.chkTree} {
				walk(t, 0, nil, func(n *node, _ int, _ []*node) {
					if n.typ == "FUNCEXPR" && !seen[n.str("funcid")] {
						seen[n.str("funcid")] = true
						var id uint32
						fmt.Sscan(n.str("funcid"), &id)
						ids = append(ids, id)
					}
				})
			}
		}
		s.read(ctx, tx, srcPolicies, func(q pgx.Tx) error {
			rows, err := q.Query(ctx, `SELECT p.oid, n.nspname::text, p.proname::text, pg_get_function_identity_arguments(p.oid), p.provolatile::text, l.lanname::text
				FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace JOIN pg_catalog.pg_language l ON l.oid = p.prolang
				WHERE p.oid = ANY($1)`, ids)
			if err != nil {
				return err
			}
			var f function
			_, err = pgx.ForEachRow(rows, []any{&f.oid, &f.schema, &f.name, &f.args, &f.volatile, &f.lang}, func() error {
				c := f
				s.treeFuncs[c.oid] = &c
				return nil
			})
			return err
		})
	}

	s.read(ctx, tx, srcIndexes, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT i.indexrelid, i.indrelid, ic.relname::text, am.amname::text, i.indisunique, i.indisprimary, i.indkey::int2[], i.indexprs IS NOT NULL,
  coalesce(pg_get_expr(i.indpred, i.indrelid), ''), pg_get_indexdef(i.indexrelid)
FROM pg_catalog.pg_index i JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid JOIN pg_catalog.pg_am am ON am.oid = ic.relam
JOIN pg_catalog.pg_class c ON c.oid = i.indrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT c.relispartition AND `+userSchemas+` ORDER BY ic.relname`)
		if err != nil {
			return err
		}
		var ix index
		var relid uint32
		_, err = pgx.ForEachRow(rows, []any{&ix.oid, &relid, &ix.name, &ix.am, &ix.unique, &ix.primary, &ix.keys, &ix.exprs, &ix.pred, &ix.def}, func() error {
			if r := s.rels[relid]; r != nil {
				c := ix
				c.rel = r
				s.indexes = append(s.indexes, &c)
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcConstraints, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT co.conname::text, co.contype::text, co.conrelid, coalesce(co.conkey, '{}')::int2[], co.confrelid, coalesce(co.confkey, '{}')::int2[]
FROM pg_catalog.pg_constraint co JOIN pg_catalog.pg_class c ON c.oid = co.conrelid JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE co.contype IN ('p', 'u', 'f', 'x') AND co.conparentid = 0 AND NOT c.relispartition AND `+userSchemas+` ORDER BY co.conname`)
		if err != nil {
			return err
		}
		var co constraint
		var relid uint32
		_, err = pgx.ForEachRow(rows, []any{&co.name, &co.typ, &relid, &co.keys, &co.frel, &co.fkeys}, func() error {
			if r := s.rels[relid]; r != nil {
				c := co
				c.rel = r
				s.constraints = append(s.constraints, &c)
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcTriggers, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT t.tgname::text, t.tgrelid, t.tgfoid FROM pg_catalog.pg_trigger t JOIN pg_catalog.pg_class c ON c.oid = t.tgrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE NOT t.tgisinternal AND t.tgparentid = 0 AND `+userSchemas+` ORDER BY t.tgname`)
		if err != nil {
			return err
		}
		var tg trigger
		var relid uint32
		_, err = pgx.ForEachRow(rows, []any{&tg.name, &relid, &tg.fn}, func() error {
			if r := s.rels[relid]; r != nil {
				c := tg
				c.rel = r
				s.triggers = append(s.triggers, &c)
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcRules, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT r.rulename::text, r.ev_type::text, r.ev_class FROM pg_catalog.pg_rewrite r JOIN pg_catalog.pg_class c ON c.oid = r.ev_class
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE r.rulename <> '_RETURN' AND `+userSchemas+` ORDER BY r.rulename`)
		if err != nil {
			return err
		}
		var ru rule
		var relid uint32
		_, err = pgx.ForEachRow(rows, []any{&ru.name, &ru.event, &relid}, func() error {
			if r := s.rels[relid]; r != nil {
				c := ru
				c.rel = r
				s.rules = append(s.rules, &c)
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcViews, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT DISTINCT r.ev_class, d.refobjid FROM pg_catalog.pg_rewrite r
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
  AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> r.ev_class
WHERE r.rulename = '_RETURN'`)
		if err != nil {
			return err
		}
		var v, t uint32
		_, err = pgx.ForEachRow(rows, []any{&v, &t}, func() error { s.viewDeps[v] = append(s.viewDeps[v], t); return nil })
		return err
	})

	s.read(ctx, tx, srcPubs, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT pt.pubname::text, c.oid FROM pg_catalog.pg_publication_tables pt
JOIN pg_catalog.pg_namespace n ON n.nspname = pt.schemaname JOIN pg_catalog.pg_class c ON c.relnamespace = n.oid AND c.relname = pt.tablename
ORDER BY 1, 2`)
		if err != nil {
			return err
		}
		var p pubRel
		_, err = pgx.ForEachRow(rows, []any{&p.pub, &p.rel}, func() error { s.pubs = append(s.pubs, p); return nil })
		return err
	})

	s.read(ctx, tx, srcDBRole, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT coalesce(d.datname::text, ''), coalesce(r.rolname::text, ''), s.setconfig
FROM pg_catalog.pg_db_role_setting s LEFT JOIN pg_catalog.pg_database d ON d.oid = s.setdatabase LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole
WHERE s.setdatabase = 0 OR d.datname = current_database()`)
		if err != nil {
			return err
		}
		var db, ro string
		var cfg []string
		_, err = pgx.ForEachRow(rows, []any{&db, &ro, &cfg}, func() error {
			for _, c := range cfg {
				name, val, _ := strings.Cut(c, "=")
				s.dbRole = append(s.dbRole, dbRoleSetting{database: db, role: ro, name: name, value: val})
			}
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcSettings, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `SELECT name, coalesce(setting, ''), context, source, coalesce(reset_val, '') FROM pg_catalog.pg_settings`)
		if err != nil {
			return err
		}
		var st setting
		_, err = pgx.ForEachRow(rows, []any{&st.name, &st.value, &st.context, &st.source, &st.reset}, func() error { s.settings[st.name] = st; return nil })
		return err
	})

	s.read(ctx, tx, srcSchemas, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT n.oid, n.nspname::text, n.nspowner, has_schema_privilege($1, n.oid, 'CREATE'),
  EXISTS (SELECT 1 FROM aclexplode(n.nspacl) a WHERE a.grantee = 0 AND a.privilege_type = 'CREATE')
FROM pg_catalog.pg_namespace n WHERE `+userSchemas, who)
		if err != nil {
			return err
		}
		var sc schemaInfo
		_, err = pgx.ForEachRow(rows, []any{&sc.oid, &sc.name, &sc.owner, &sc.runtimeCreate, &sc.publicCreate}, func() error {
			c := sc
			s.schemas[c.oid] = &c
			s.schemaByName[c.name] = &c
			return nil
		})
		return err
	})

	s.read(ctx, tx, srcSeqs, func(q pgx.Tx) error {
		rows, err := q.Query(ctx, `
SELECT d.refobjid, n.nspname::text || '.' || s.relname::text FROM pg_catalog.pg_class s JOIN pg_catalog.pg_namespace n ON n.oid = s.relnamespace
JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.deptype IN ('a', 'i')
WHERE s.relkind = 'S' AND `+userSchemas+` ORDER BY 2`)
		if err != nil {
			return err
		}
		var su seqUse
		_, err = pgx.ForEachRow(rows, []any{&su.table, &su.seq}, func() error { s.seqs = append(s.seqs, su); return nil })
		return err
	})

	if len(s.failed) > 0 && s.failed[srcRels] != "" && s.failed[srcPolicies] != "" && s.failed[srcFuncs] != "" {
		return nil, fmt.Errorf("%w as %s: %s", ErrNoCatalog, s.currentUser, s.failed[srcRels])
	}
	// The context settings' values in this fresh session, and where the
	// configuration files set them (pg_file_settings is superuser-only:
	// without it, a value no role or database default explains is taken
	// as coming from the server configuration).
	s.sessionValues = map[string]string{}
	s.fileSettings = map[string]string{}
	if names := s.contextSettings(); len(names) > 0 {
		s.read(ctx, tx, srcSettings, func(q pgx.Tx) error {
			rows, err := q.Query(ctx, `SELECT n, coalesce(current_setting(n, true), '') FROM unnest($1::text[]) n`, names)
			if err != nil {
				return err
			}
			var n, v string
			_, err = pgx.ForEachRow(rows, []any{&n, &v}, func() error { s.sessionValues[n] = v; return nil })
			return err
		})
		sp, err := tx.Begin(ctx)
		if err == nil {
			rows, err := sp.Query(ctx, `SELECT name, coalesce(setting, '') || ' (' || coalesce(sourcefile, '?') || ':' || coalesce(sourceline, 0) || ')' FROM pg_catalog.pg_file_settings WHERE applied AND name = ANY($1)`, names)
			if err == nil {
				var n, v string
				_, err = pgx.ForEachRow(rows, []any{&n, &v}, func() error { s.fileSettings[n] = v; return nil })
			}
			s.fileSettingsRead = err == nil
			sp.Rollback(ctx)
		}
	}
	// CVE-2024-4317: patched binaries fix pg_stats_ext only in clusters
	// initialised after the fix; older ones need fix-CVE-2024-4317.sql in
	// every database.
	s.statsExtFixed = true
	s.read(ctx, tx, srcSettings, func(q pgx.Tx) error {
		return q.QueryRow(ctx, `SELECT coalesce(bool_and(pg_get_viewdef(c.oid) LIKE '%pg_has_role(c.relowner%'), true)
			FROM pg_catalog.pg_class c WHERE c.oid IN (to_regclass('pg_catalog.pg_stats_ext'), to_regclass('pg_catalog.pg_stats_ext_exprs'))`).Scan(&s.statsExtFixed)
	})
	s.discover()
	return s, nil
}

// discover marks the tenant tables: tables with the tenant column, and
// tables with row-level security enabled or with policies.
func (s *snapshot) discover() {
	for _, r := range s.rels {
		if r.kind != "r" && r.kind != "p" {
			continue
		}
		if r.rls || len(r.policies) > 0 {
			r.tenant = true
		} else if r.tenantAtt != 0 {
			// With a runtime role, a table it can't touch at all (no RLS,
			// no privilege) is outside the application's isolation: noted,
			// not audited.
			if s.runtime != "" && !(r.sel || r.ins || r.upd || r.del || r.truncate || r.refs || r.trig) {
				s.unreachable = append(s.unreachable, r.qname())
				continue
			}
			r.tenant = true
		}
		if r.tenant {
			s.tenant = append(s.tenant, r)
		}
	}
	sort.Slice(s.tenant, func(i, j int) bool { return s.tenant[i].qname() < s.tenant[j].qname() })
	if len(s.unreachable) > 0 {
		sort.Strings(s.unreachable)
		s.notes = append(s.notes, fmt.Sprintf("not audited: %d tables with the tenant column but no row-level security that %s can't access at all: %s", len(s.unreachable), s.runtime, strings.Join(s.unreachable, ", ")))
	}
	withCol := 0
	for _, r := range s.tenant {
		if r.tenantAtt != 0 {
			withCol++
		}
	}
	if _, failed := s.failed[srcColumns]; !failed && withCol == 0 {
		s.notes = append(s.notes, fmt.Sprintf("no table has a column named %q: tenant tables were discovered from row-level security and policies only (use --tenant-column)", s.opts.TenantColumn))
	}
	if len(s.tenant) == 0 {
		s.notes = append(s.notes, "no tenant tables found: neither a tenant column nor row-level security anywhere")
	}
}

func (s *snapshot) canRun(c Check) (reason string, privilege bool, ok bool) {
	for _, src := range c.Needs {
		if why, failed := s.failed[src]; failed {
			return fmt.Sprintf("could not read %s: %s", src, why), true, false
		}
	}
	if c.Runtime && s.runtime == "" {
		return "needs --runtime-role", false, false
	}
	return "", false, true
}

func (s *snapshot) roleName(oid uint32) string {
	if r := s.roles[oid]; r != nil {
		return r.name
	}
	if oid == 0 {
		return "PUBLIC"
	}
	return fmt.Sprint(oid)
}
