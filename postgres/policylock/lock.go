package policylock

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// FormatVersion is the version of the lock file's layout.
const FormatVersion = 1

// Lock is the reviewed state of a database's isolation rules.
type Lock struct {
	Format      int        `json:"format"`
	Comment     string     `json:"comment"`
	ServerMajor int        `json:"server_major"`
	Tables      []Table    `json:"tables"`
	Policies    []Policy   `json:"policies"`
	Grants      []Grant    `json:"grants"`
	Definers    []Function `json:"definer_functions"`
	// PolicyFunctions are the functions outside the system schemas that a
	// policy's expression calls and that are not SECURITY DEFINER (those
	// are in Definers): the context functions above all. A policy whose
	// text is unchanged means something else when one of them does.
	PolicyFunctions []Function          `json:"policy_functions"`
	Matrix          []model.TableMatrix `json:"matrix,omitempty"`
}

// Table is one table with row-level security or policies.
type Table struct {
	Name  string `json:"name"` // schema.table, quoted where PostgreSQL needs it
	Kind  string `json:"kind"` // table, partitioned
	Owner string `json:"owner"`
	RLS   bool   `json:"rls"`
	Force bool   `json:"force"`
}

// Policy is one policy as PostgreSQL deparses it.
type Policy struct {
	Table      string   `json:"table"`
	Name       string   `json:"name"`
	Permissive string   `json:"permissive"`
	Roles      []string `json:"roles"`
	Command    string   `json:"command"`
	Using      string   `json:"using,omitempty"`
	Check      string   `json:"check,omitempty"`
}

// Grant is one privilege held by a role other than the object's owner.
type Grant struct {
	Object    string `json:"object"` // "table s.t", "column s.t.c", "schema s"
	Grantee   string `json:"grantee"`
	Privilege string `json:"privilege"`
	Grantable bool   `json:"grantable,omitempty"`
}

// Function is one SECURITY DEFINER function, or one a policy calls.
type Function struct {
	Signature string   `json:"signature"`
	Owner     string   `json:"owner"`
	Config    []string `json:"config,omitempty"` // proconfig: search_path=... and other pinned settings
	BodyMD5   string   `json:"body_md5"`
	Executors []string `json:"executors"` // roles with EXECUTE (PUBLIC included)
}

// ErrPrivilege means the connecting role can't read what a lock needs.
var ErrPrivilege = errors.New("not enough privilege")

// Marshal renders the lock as the file's bytes (indented JSON, sorted).
func (l *Lock) Marshal() ([]byte, error) {
	var b bytes.Buffer
	e := json.NewEncoder(&b)
	e.SetIndent("", "  ")
	e.SetEscapeHTML(false)
	if err := e.Encode(l); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// Load reads a lock file.
func Load(path string) (*Lock, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read lock: %w", err)
	}
	var l Lock
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("lock %s is not a policy lock: %w", path, err)
	}
	if l.Format != FormatVersion {
		return nil, fmt.Errorf("lock %s has format %d, this bulkhead reads %d: regenerate it with bulkhead policy lock", path, l.Format, FormatVersion)
	}
	return &l, nil
}

// systemSchemas excludes PostgreSQL's own schemas.
const systemSchemas = `n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\_toast%' AND n.nspname NOT LIKE 'pg\_temp%'`

const tablesSQL = `
SELECT c.oid::regclass::text, CASE c.relkind WHEN 'p' THEN 'partitioned' ELSE 'table' END,
       pg_catalog.pg_get_userbyid(c.relowner), c.relrowsecurity, c.relforcerowsecurity
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND ` + systemSchemas + `
  AND (c.relrowsecurity OR EXISTS (SELECT 1 FROM pg_catalog.pg_policy p WHERE p.polrelid = c.oid))
ORDER BY 1`

const policiesSQL = `
SELECT c.oid::regclass::text, p.polname,
       CASE WHEN p.polpermissive THEN 'PERMISSIVE' ELSE 'RESTRICTIVE' END,
       CASE WHEN p.polroles = '{0}' THEN ARRAY['public']
            ELSE ARRAY(SELECT r.rolname::text FROM pg_catalog.pg_roles r WHERE r.oid = ANY (p.polroles) ORDER BY 1) END,
       CASE p.polcmd WHEN 'r' THEN 'SELECT' WHEN 'a' THEN 'INSERT' WHEN 'w' THEN 'UPDATE' WHEN 'd' THEN 'DELETE' ELSE 'ALL' END,
       coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), ''),
       coalesce(pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid), '')
FROM pg_catalog.pg_policy p JOIN pg_catalog.pg_class c ON c.oid = p.polrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE ` + systemSchemas + `
ORDER BY 1, 2`

// grantsSQL lists privileges on tables, their columns and schemas held by
// anyone but the owner (the owner's are implied).
const grantsSQL = `
WITH rels AS (
  SELECT c.oid, c.relowner, c.relacl, c.oid::regclass::text AS name
  FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND ` + systemSchemas + `
), acl AS (
  SELECT 'table ' || r.name AS obj, a.grantee, a.privilege_type, a.is_grantable, r.relowner AS owner
  FROM rels r, LATERAL pg_catalog.aclexplode(r.relacl) a
  UNION ALL
  SELECT 'column ' || r.name || '.' || quote_ident(att.attname), a.grantee, a.privilege_type, a.is_grantable, r.relowner
  FROM rels r JOIN pg_catalog.pg_attribute att ON att.attrelid = r.oid AND att.attnum > 0 AND NOT att.attisdropped,
       LATERAL pg_catalog.aclexplode(att.attacl) a
  UNION ALL
  SELECT 'schema ' || quote_ident(n.nspname), a.grantee, a.privilege_type, a.is_grantable, n.nspowner
  FROM pg_catalog.pg_namespace n, LATERAL pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
  WHERE ` + systemSchemas + ` AND n.nspname <> 'public'
)
SELECT obj, CASE WHEN grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(grantee) END, privilege_type, is_grantable
FROM acl WHERE grantee <> owner
ORDER BY 1, 2, 3`

const definersSQL = `
SELECT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner),
       coalesce(p.proconfig, '{}'), md5(p.prosrc),
       ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END
             FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
             WHERE a.privilege_type = 'EXECUTE' ORDER BY 1)
FROM pg_catalog.pg_proc p JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE p.prosecdef AND ` + systemSchemas + `
ORDER BY 1`

// policyFunctionsSQL lists the functions policy expressions call directly
// (pg_depend records them when a policy is created), other than
// PostgreSQL's own and the SECURITY DEFINER ones definersSQL lists. What
// those call in turn is not recorded by PostgreSQL for a body kept as text.
const policyFunctionsSQL = `
SELECT DISTINCT p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner),
       coalesce(p.proconfig, '{}'), md5(p.prosrc),
       ARRAY(SELECT DISTINCT CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_catalog.pg_get_userbyid(a.grantee) END
             FROM pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
             WHERE a.privilege_type = 'EXECUTE' ORDER BY 1)
FROM pg_catalog.pg_depend d
JOIN pg_catalog.pg_proc p ON d.refclassid = 'pg_catalog.pg_proc'::regclass AND p.oid = d.refobjid
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
WHERE d.classid = 'pg_catalog.pg_policy'::regclass AND NOT p.prosecdef AND ` + systemSchemas + `
ORDER BY 1`

// ReadCatalog reads the tables, policies, grants, definer functions and
// the functions policies call of
// the database conn is connected to, in a READ ONLY transaction. Any role
// that can read the system catalogs can run it.
func ReadCatalog(ctx context.Context, conn *pgx.Conn) (*Lock, error) {
	l := &Lock{Format: FormatVersion, Comment: "Generated by `bulkhead policy lock`; `bulkhead policy check` fails when the database differs. Review changes to this file like code."}
	err := pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var num int
		if err := tx.QueryRow(ctx, "SELECT current_setting('server_version_num')::int").Scan(&num); err != nil {
			return fmt.Errorf("server version: %w", err)
		}
		l.ServerMajor = num / 10000
		rows, _ := tx.Query(ctx, tablesSQL)
		var err error
		l.Tables, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (t Table, err error) {
			err = r.Scan(&t.Name, &t.Kind, &t.Owner, &t.RLS, &t.Force)
			return
		})
		if err != nil {
			return fmt.Errorf("read tables: %w", explain(err))
		}
		rows, _ = tx.Query(ctx, policiesSQL)
		l.Policies, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (p Policy, err error) {
			err = r.Scan(&p.Table, &p.Name, &p.Permissive, &p.Roles, &p.Command, &p.Using, &p.Check)
			return
		})
		if err != nil {
			return fmt.Errorf("read policies: %w", explain(err))
		}
		rows, _ = tx.Query(ctx, grantsSQL)
		l.Grants, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (g Grant, err error) {
			err = r.Scan(&g.Object, &g.Grantee, &g.Privilege, &g.Grantable)
			return
		})
		if err != nil {
			return fmt.Errorf("read grants: %w", explain(err))
		}
		rows, _ = tx.Query(ctx, definersSQL)
		l.Definers, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (f Function, err error) {
			err = r.Scan(&f.Signature, &f.Owner, &f.Config, &f.BodyMD5, &f.Executors)
			return
		})
		if err != nil {
			return fmt.Errorf("read definer functions: %w", explain(err))
		}
		rows, _ = tx.Query(ctx, policyFunctionsSQL)
		l.PolicyFunctions, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (f Function, err error) {
			err = r.Scan(&f.Signature, &f.Owner, &f.Config, &f.BodyMD5, &f.Executors)
			return
		})
		if err != nil {
			return fmt.Errorf("read policy functions: %w", explain(err))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sortLock(l)
	return l, nil
}

// sortLock orders everything so that equal states give equal files.
func sortLock(l *Lock) {
	for i := range l.Policies {
		sort.Strings(l.Policies[i].Roles)
	}
	for _, fs := range [][]Function{l.Definers, l.PolicyFunctions} {
		for i := range fs {
			sort.Strings(fs[i].Config)
			sort.Strings(fs[i].Executors)
		}
	}
	sort.Slice(l.Grants, func(i, j int) bool {
		a, b := l.Grants[i], l.Grants[j]
		if a.Object != b.Object {
			return a.Object < b.Object
		}
		if a.Grantee != b.Grantee {
			return a.Grantee < b.Grantee
		}
		return a.Privilege < b.Privilege
	})
}

// explain turns a privilege error into ErrPrivilege with the role's fix.
func explain(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "42501" {
		return fmt.Errorf("%w: %s (connect as a role that can read the system catalogs, e.g. the schema owner or a superuser)", ErrPrivilege, pe.Message)
	}
	return err
}
