package rls

import (
	"fmt"
	"strings"
)

// ContextFunctions returns the SQL creating the functions that read the
// context settings (current_tenant, current_entity, current_acting_for).
// They depend on no table, so tables can use current_tenant() as the
// default of their tenant column; install them before the tables.
// Every helper pins its search_path and qualifies every name, so a caller's
// search_path can't redirect it.
func ContextFunctions(cfg Config) ([]string, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	s := cfg.Schema
	// Inlinable: no SET clause, every name qualified (the operator too), so
	// the planner folds the call into the statement and a prepared statement
	// plans it once. Nothing can shadow pg_catalog names for the runtime
	// role, which may create no object in any schema. Semantics are those of
	// nullif(current_setting(name, true), '')::uuid.
	// With another TenantType, current_tenant casts to that type instead
	// (a setting that isn't one fails the statement: no rows, no writes).
	setting := func(name, setting, typ string) string {
		return fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s.%s() RETURNS %s
  LANGUAGE sql STABLE PARALLEL SAFE
  AS $fn$ SELECT CASE WHEN pg_catalog.current_setting('%[4]s', true) OPERATOR(pg_catalog.<>) '' THEN pg_catalog.current_setting('%[4]s', true)::pg_catalog.%[5]s END $fn$`, s, name, typ, setting, tenantTypes[typ])
	}
	stmts := []string{
		setting("current_tenant", cfg.TenantSetting, cfg.tenantType()),
		setting("current_entity", cfg.EntitySetting, "uuid"),
		setting("current_acting_for", cfg.ActingForSetting, "uuid"),
	}
	for _, f := range ContextFunctionNames {
		stmts = append(stmts, grantExecute(cfg, s+"."+f+"()")...)
	}
	return stmts, nil
}

// RemoveContextFunctions undoes ContextFunctions.
func RemoveContextFunctions(cfg Config) []string {
	var stmts []string
	for i := len(ContextFunctionNames) - 1; i >= 0; i-- {
		stmts = append(stmts, fmt.Sprintf("DROP FUNCTION IF EXISTS %s.%s()", cfg.Schema, ContextFunctionNames[i]))
	}
	return stmts
}

func grantExecute(cfg Config, sig string) []string {
	return []string{
		"REVOKE ALL ON FUNCTION " + sig + " FROM PUBLIC",
		fmt.Sprintf("GRANT EXECUTE ON FUNCTION %s TO %s, %s, %s, %s", sig, cfg.Runtime, cfg.Maintenance, cfg.Owner, cfg.Definer),
	}
}

// functions returns the helpers that read tables: current_actors and the
// SECURITY DEFINER membership helpers.
func functions(cfg Config) []string {
	s := cfg.Schema
	stmts := []string{
		// The entity, plus the principal it acts for only while a valid
		// delegation holding scope exists (scope NULL: the entity alone);
		// empty without an entity. It runs as the caller (delegations' own
		// policy applies) or, inside a definer helper, as the definer: either
		// way it filters by the tenant in context. PL/pgSQL so its one
		// query's plan is cached per session; the common path (no acting-for)
		// runs no query at all. Like the context functions it has no SET
		// clause (that costs a search_path switch on every call) and
		// qualifies every name instead.
		fmt.Sprintf(`CREATE OR REPLACE FUNCTION %[1]s.current_actors(scope pg_catalog.text) RETURNS pg_catalog.uuid[]
  LANGUAGE plpgsql STABLE
  AS $fn$
DECLARE
  e pg_catalog.uuid := %[1]s.current_entity();
  a pg_catalog.uuid := %[1]s.current_acting_for();
BEGIN
  IF e IS NULL THEN
    RETURN '{}'::pg_catalog.uuid[];
  END IF;
  IF a IS NULL OR scope IS NULL THEN
    RETURN ARRAY[e];
  END IF;
  PERFORM FROM %[1]s.delegations d
    WHERE d.tenant_id OPERATOR(pg_catalog.=) %[1]s.current_tenant()
      AND d.agent_id OPERATOR(pg_catalog.=) e AND d.principal_id OPERATOR(pg_catalog.=) a
      AND d.revoked_at IS NULL
      AND (d.expires_at IS NULL OR d.expires_at OPERATOR(pg_catalog.>) pg_catalog.now())
      AND scope OPERATOR(pg_catalog.=) ANY(d.scopes);
  IF FOUND THEN
    RETURN ARRAY[e, a];
  END IF;
  RETURN ARRAY[e];
END
$fn$`, s),
	}
	// The definer helpers are PL/pgSQL, one query each, so their plans are
	// cached per session (a non-inlined SQL function is re-planned on every
	// call); the array-valued ones run once per statement as InitPlans, and
	// none has an exception block. Each filters by the tenant in context and
	// answers only about the entity in context (and, with a scope, the
	// principal it acts for under a delegation holding that scope).
	for _, d := range cfg.definers() {
		stmts = append(stmts,
			fmt.Sprintf(`CREATE OR REPLACE FUNCTION %s.%s(%s) RETURNS %s
  LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
  AS $fn$
DECLARE
  result %s;
BEGIN%s;
  RETURN result;
END
$fn$`, s, d.name, d.args, d.returns, d.returns, strings.ReplaceAll(d.query, "S.", s+".")),
			fmt.Sprintf("ALTER FUNCTION %s.%s(%s) OWNER TO %s", s, d.name, argTypes(d.args), cfg.Definer))
	}
	if cfg.NativeMembership {
		// SQL functions the planner inlines: the policies call the C
		// functions directly (member_rooms once per statement, as an
		// InitPlan; can_author once per written row).
		for _, n := range natives {
			d := n.definer()
			stmts = append(stmts, fmt.Sprintf(`CREATE OR REPLACE FUNCTION %[1]s.%[2]s(%[3]s) RETURNS %[4]s
  LANGUAGE sql STABLE
  AS $fn$ SELECT %[1]s.%[5]s(%[6]s) $fn$`, s, n.name, catalogArgs(d.args), catalogType(d.returns), n.native, argNames(d.args)),
				fmt.Sprintf("ALTER FUNCTION %s.%s(%s) OWNER TO %s", s, n.name, argTypes(d.args), cfg.Owner))
		}
	}
	stmts = append(stmts, grantExecute(cfg, fmt.Sprintf("%s.current_actors(text)", s))...)
	for _, d := range cfg.definers() {
		stmts = append(stmts, grantExecute(cfg, fmt.Sprintf("%s.%s(%s)", s, d.name, argTypes(d.args)))...)
	}
	if cfg.NativeMembership {
		for _, n := range natives {
			stmts = append(stmts, grantExecute(cfg, fmt.Sprintf("%s.%s(%s)", s, n.name, argTypes(n.definer().args)))...)
		}
	}
	return stmts
}

// natives are the helpers NativeMembership implements in bulkhead_context's
// C: name, the helper the policies call, becomes an inlined SQL call to
// native, and name's PL/pgSQL definer body is installed as delegated, which
// the C function calls when an agent acts for a principal under a scope.
var natives = []native{
	{"member_rooms", "member_rooms_native", "member_rooms_delegated"},
	{"can_author", "can_author_native", "can_author_delegated"},
}

type native struct{ name, native, delegated string }

// definer returns the definer helper n replaces (its signature is n's).
func (n native) definer() definer {
	for _, d := range definers {
		if d.name == n.name {
			return d
		}
	}
	panic("rls: no definer helper " + n.name)
}

// catalogTypes qualifies the types the helpers' signatures use.
var catalogTypes = map[string]string{"uuid": "pg_catalog.uuid", "text": "pg_catalog.text", "boolean": "pg_catalog.bool", "uuid[]": "pg_catalog.uuid[]"}

func catalogType(t string) string {
	if q, ok := catalogTypes[t]; ok {
		return q
	}
	panic("rls: no qualified name for type " + t)
}

// catalogArgs turns "room uuid, scope text" into "room pg_catalog.uuid,
// scope pg_catalog.text".
func catalogArgs(args string) string {
	return mapArgs(args, func(name, typ string) string { return name + " " + catalogType(typ) })
}

// argNames turns "room uuid, scope text" into "room, scope".
func argNames(args string) string {
	return mapArgs(args, func(name, _ string) string { return name })
}

// mapArgs applies f to the name and type of each argument of a signature
// ("room uuid, scope text") and joins the results with ", ".
func mapArgs(args string, f func(name, typ string) string) string {
	if args == "" {
		return ""
	}
	parts := strings.Split(args, ",")
	for i, p := range parts {
		w := strings.Fields(p)
		parts[i] = f(w[0], w[len(w)-1])
	}
	return strings.Join(parts, ", ")
}

// definers returns the SECURITY DEFINER helpers cfg installs.
func (cfg Config) definers() []definer {
	if !cfg.NativeMembership {
		return definers
	}
	out := make([]definer, len(definers))
	for i, d := range definers {
		for _, n := range natives {
			if d.name == n.name {
				d.name = n.delegated
			}
		}
		out[i] = d
	}
	return out
}

// definer is one SECURITY DEFINER helper: its query stores into result; S.
// stands for the schema.
type definer struct{ name, args, returns, query string }

var definers = []definer{
	// Rooms where the entity (or, with scope, the principal it acts for)
	// participates.
	{"member_rooms", "scope text", "uuid[]", `
  SELECT coalesce(array_agg(DISTINCT p.room_id), '{}') INTO result FROM S.participants p
  WHERE p.tenant_id = S.current_tenant() AND p.entity_id = ANY(S.current_actors(scope))`},
	// Rooms the entity itself manages: owner/admin participant, or owner of the world.
	{"managed_rooms", "", "uuid[]", `
  SELECT coalesce(array_agg(x.id), '{}') INTO result FROM (
    SELECT p.room_id AS id FROM S.participants p
    WHERE p.tenant_id = S.current_tenant() AND p.entity_id = S.current_entity() AND p.role IN ('owner', 'admin')
    UNION
    SELECT r.id FROM S.rooms r JOIN S.worlds w ON w.tenant_id = r.tenant_id AND w.id = r.world_id
    WHERE r.tenant_id = S.current_tenant() AND w.owner_id = S.current_entity()) x`},
	// Rooms the entity itself owns: owner participant, or owner of the world.
	{"owned_rooms", "", "uuid[]", `
  SELECT coalesce(array_agg(x.id), '{}') INTO result FROM (
    SELECT p.room_id AS id FROM S.participants p
    WHERE p.tenant_id = S.current_tenant() AND p.entity_id = S.current_entity() AND p.role = 'owner'
    UNION
    SELECT r.id FROM S.rooms r JOIN S.worlds w ON w.tenant_id = r.tenant_id AND w.id = r.world_id
    WHERE r.tenant_id = S.current_tenant() AND w.owner_id = S.current_entity()) x`},
	// Worlds holding a room the entity (or its principal, with rooms:read) participates in.
	{"member_worlds", "", "uuid[]", `
  SELECT coalesce(array_agg(DISTINCT r.world_id), '{}') INTO result FROM S.rooms r
  WHERE r.tenant_id = S.current_tenant() AND r.id = ANY(S.member_rooms('` + ScopeRooms + `'))`},
	// Worlds the entity owns.
	{"owned_worlds", "", "uuid[]", `
  SELECT coalesce(array_agg(w.id), '{}') INTO result FROM S.worlds w
  WHERE w.tenant_id = S.current_tenant() AND w.owner_id = S.current_entity()`},
	// Whether a room of the tenant in context is open for self-join.
	{"room_is_open", "room uuid", "boolean", `
  SELECT EXISTS (SELECT 1 FROM S.rooms r WHERE r.tenant_id = S.current_tenant() AND r.id = room AND r.is_open) INTO result`},
	// Whether author may write in room: author is one of the caller's actors
	// for scope and participates in the room. It answers only about the
	// caller's actors, whose membership the caller can read anyway.
	{"can_author", "room uuid, author uuid, scope text", "boolean", `
  SELECT author = ANY(S.current_actors(scope)) AND EXISTS (SELECT 1 FROM S.participants p
    WHERE p.tenant_id = S.current_tenant() AND p.room_id = room AND p.entity_id = author) INTO result`},
}

// argTypes turns "room uuid, entity uuid" into "uuid, uuid".
func argTypes(args string) string {
	return mapArgs(args, func(_, typ string) string { return typ })
}

// bodyKey is FunctionBodies' key of helper name with arguments args:
// "name(type,type)", as postgres.ReadFunctions spells a signature.
func bodyKey(name, args string) string {
	return name + "(" + strings.ReplaceAll(argTypes(args), ", ", ",") + ")"
}

// FunctionBodies returns, by "name(argument types)", the body (the text
// between the $fn$ quotes, as pg_proc.prosrc stores it) of every helper
// Generate installs that reads a table: current_actors, the definer
// helpers and, with NativeMembership, member_rooms and can_author and the
// C functions they call (their prosrc: the symbol). The generator's own
// tests read them; the self-check compares a database with the migrations'
// record of functions, which the generated migration makes.
func FunctionBodies(cfg Config) map[string]string {
	out := map[string]string{}
	for _, stmt := range functions(cfg) {
		head, rest, ok := strings.Cut(stmt, "$fn$")
		if !ok || !strings.HasPrefix(head, "CREATE OR REPLACE FUNCTION ") {
			continue
		}
		body, _, _ := strings.Cut(rest, "$fn$")
		sig := strings.TrimPrefix(head, "CREATE OR REPLACE FUNCTION "+cfg.Schema+".")
		name, args, _ := strings.Cut(sig, "(")
		args, _, _ = strings.Cut(args, ")")
		out[bodyKey(name, strings.ReplaceAll(args, "pg_catalog.", ""))] = body
	}
	if cfg.NativeMembership {
		// A C function's prosrc is its symbol in bulkhead_context.
		for _, n := range natives {
			out[bodyKey(n.native, n.definer().args)] = "bulkhead_" + n.native
		}
	}
	return out
}
