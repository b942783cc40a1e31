package rls

import (
	"fmt"
	"regexp"
	"strings"
)

func matches(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }

// Policy is one generated policy.
type Policy struct {
	Name       string
	Command    string // ALL, SELECT, INSERT, UPDATE, DELETE
	Permissive bool   // false: AS RESTRICTIVE
	Using      string // "" when the command has no USING clause
	Check      string // "" when the command has no WITH CHECK clause
}

// Policy names. The layer-1 policy is the only permissive one.
const (
	TenantPolicy = "bulkhead_tenant"
	policyPrefix = "bulkhead_"
)

// ScopeRooms is the delegation scope that lets an agent acting for a
// principal see the principal's rooms, their participants and worlds.
const ScopeRooms = "rooms:read"

// ReadScope and WriteScope name the delegation scopes that let an agent
// read or write a Room or Visibility table as the principal it acts for.
func ReadScope(table string) string  { return table + ":read" }
func WriteScope(table string) string { return table + ":write" }

// Scopes lists every delegation scope that means something for tables:
// ScopeRooms, then read (Room, Visibility) and write (Room) per table. A
// delegation's authority outside its scopes is nil: the policies consult
// the scope of the table and command at hand.
func Scopes(tables []Table) []string {
	out := []string{ScopeRooms}
	for _, t := range tables {
		switch t.Kind {
		case Room:
			out = append(out, ReadScope(t.Name), WriteScope(t.Name))
		case Visibility:
			out = append(out, ReadScope(t.Name))
		}
	}
	return out
}

// ident returns name as an SQL identifier: bare when it is a plain
// lower-case identifier that isn't a keyword, double-quoted otherwise. It is
// the one way the generator writes a name.
func ident(name string) string {
	if identRE.MatchString(name) && !reserved[name] {
		return name
	}
	return `"` + strings.ReplaceAll(name, `"`, `""`) + `"`
}

// reserved holds the keywords a bare column name can't be.
var reserved = map[string]bool{"user": true, "order": true, "group": true, "table": true, "select": true, "where": true,
	"from": true, "to": true, "all": true, "end": true, "check": true, "default": true, "limit": true, "offset": true}

// rel is a relation in a policy expression. Every column reference goes
// through col, so it names the relation it belongs to: inside a sub-query
// an unqualified name binds to the innermost relation that has it (the bug
// class "p.room_id = room_id", where room_id silently meant p.room_id).
type rel struct{ alias string }

func (r rel) col(name string) string { return ident(r.alias) + "." + ident(name) }

// alias for sub-query relations; Table.validate refuses table names with
// this prefix, so the row under the policy is never shadowed.
const aliasPrefix = "bh_"

// expr builds the expressions of one table's policies.
type expr struct {
	s   string // schema, as an identifier
	row rel    // the row under the policy, qualified by the table's own name
}

func (e expr) table(name string) string { return e.s + "." + ident(name) }

// fn calls a context or membership helper as an InitPlan: once per statement.
func (e expr) fn(name string, args ...string) string {
	return "(SELECT " + e.s + "." + name + "(" + strings.Join(args, ", ") + "))"
}

// arr is an array-valued helper, cast so that "= ANY(...)" takes the array
// form (evaluated once, as an InitPlan) rather than the sub-query form.
func (e expr) arr(name string, args ...string) string { return e.fn(name, args...) + "::uuid[]" }

func (e expr) tenant() string { return e.fn("current_tenant") }
func (e expr) entity() string { return e.fn("current_entity") }

func lit(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// scopeArg is a scope literal, or NULL: the entity alone, no delegation.
func scopeArg(scope string) string {
	if scope == "" {
		return "NULL::text"
	}
	return lit(scope)
}

// actors: the entity, plus the principal it acts for under a valid
// delegation holding scope.
func (e expr) actors(scope string) string { return e.arr("current_actors", scopeArg(scope)) }

// memberRooms: rooms where one of actors(scope) participates.
func (e expr) memberRooms(scope string) string { return e.arr("member_rooms", scopeArg(scope)) }
func (e expr) managedRooms() string            { return e.arr("managed_rooms") }
func (e expr) ownedRooms() string              { return e.arr("owned_rooms") }
func (e expr) memberWorlds() string            { return e.arr("member_worlds") }
func (e expr) ownedWorlds() string             { return e.arr("owned_worlds") }

// is: the row's column holds the entity in context.
func (e expr) is(col string) string { return e.row.col(col) + " = " + e.entity() }

// in: the row's column is an element of an array expression.
func (e expr) in(col, array string) string { return e.row.col(col) + " = ANY(" + array + ")" }

// owns: the row's column references a row of table whose owner column
// holds the entity in context, read as the caller (table's own policies
// apply). It is a correlated EXISTS, one primary-key probe per row checked:
// the array form (every owned id, built per statement) cost O(the owner's
// rows) per statement and, estimated at one element by the planner, led it
// to scan the whole tenant through the wrong index (docs/DECISIONS.md,
// "Parent look-ups are probes").
func (e expr) owns(col, table, owner string) string {
	p := rel{aliasPrefix + "ref"}
	return fmt.Sprintf("EXISTS (SELECT 1 FROM %s %s WHERE %s = %s AND %s = %s)", e.table(table), p.alias, p.col("id"), e.row.col(col), p.col(owner), e.entity())
}

// visible: the row's column references a row of table the caller can see
// (table's own policies apply), probed per row like owns.
func (e expr) visible(col, table string) string {
	p := rel{aliasPrefix + "ref"}
	return fmt.Sprintf("EXISTS (SELECT 1 FROM %s %s WHERE %s = %s)", e.table(table), p.alias, p.col("id"), e.row.col(col))
}

func and(xs ...string) string { return strings.Join(paren(xs), " AND ") }
func or(xs ...string) string  { return strings.Join(paren(xs), " OR ") }

func paren(xs []string) []string {
	out := make([]string, len(xs))
	for i, x := range xs {
		if strings.Contains(x, " OR ") || strings.Contains(x, " AND ") {
			x = "(" + x + ")"
		}
		out[i] = x
	}
	return out
}

// rules are a table's layer-2 expressions; "" means no rule for that clause.
type rules struct{ sel, ins, upd, updCheck, del string }

// Policies returns the policies Generate installs on t, layer 1 first.
// The self-check compares a database's policies with this list.
func Policies(cfg Config, t Table) ([]Policy, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	if cfg.tenantType() != "uuid" && t.Kind != Tenant {
		return nil, fmt.Errorf("table %s: tenant type %s: only kind Tenant (layer 1) takes a tenant that is not a uuid", t.Name, cfg.TenantType)
	}
	e := expr{s: ident(cfg.Schema), row: rel{t.Name}}
	layer1 := e.row.col(t.tenantColumn()) + " = " + e.tenant()
	ps := []Policy{{Name: TenantPolicy, Command: "ALL", Permissive: true, Using: layer1, Check: layer1}}

	r := layer2(e, t)
	if r.updCheck == "" {
		r.updCheck = r.upd
	}
	add := func(cmd, using, check string) {
		if using == "" && check == "" {
			return
		}
		ps = append(ps, Policy{Name: policyPrefix + strings.ToLower(cmd), Command: cmd, Using: using, Check: check})
	}
	add("SELECT", r.sel, "")
	add("INSERT", "", r.ins)
	add("UPDATE", r.upd, r.updCheck)
	add("DELETE", r.del, "")
	return ps, nil
}

// layer2 is each kind's entity rules (see Kind's documentation).
func layer2(e expr, t Table) rules {
	switch t.Kind {
	case Tenant:
		return rules{}
	case Entities:
		// Creating an agent entity; updating one's own row.
		return rules{ins: and(e.row.col("kind")+" = 'agent'", e.entity()+" IS NOT NULL"), upd: e.is(t.Entity)}
	case Owned:
		return rules{ins: e.is(t.Entity), upd: e.is(t.Entity), del: e.is(t.Entity)}
	case Agents:
		// The owner writes; a new row must name an agent entity, so nobody
		// "owns" a user (or any non-agent entity) as an agent.
		bh := rel{aliasPrefix + "ent"}
		isAgent := fmt.Sprintf("EXISTS (SELECT 1 FROM %s %s WHERE %s = %s AND %s = %s AND %s = 'agent')",
			e.table("entities"), bh.alias, bh.col("tenant_id"), e.row.col(t.tenantColumn()), bh.col("id"), e.row.col("id"), bh.col("kind"))
		return rules{ins: and(e.is(t.Entity), isAgent), upd: e.is(t.Entity), del: e.is(t.Entity)}
	case Private:
		return rules{sel: e.is(t.Entity), ins: e.is(t.Entity), upd: e.is(t.Entity), del: e.is(t.Entity)}
	case Room:
		// Reads: participants, the principal's rooms only with the read scope.
		// Writes: the author is an actor (itself, or the principal under a
		// delegation holding the write scope) and participates in the room,
		// checked per row by a definer helper that answers only about actors.
		author := fmt.Sprintf("%s.can_author(%s, %s, %s)", e.s, e.row.col(t.RoomColumn), e.row.col(t.Entity), lit(WriteScope(t.Name)))
		return rules{sel: e.in(t.RoomColumn, e.memberRooms(ReadScope(t.Name))), ins: author, upd: author, del: author}
	case Visibility:
		vis := e.row.col("visibility")
		sel := or(vis+" = 'tenant'", e.in(t.Entity, e.actors(ReadScope(t.Name))),
			and(vis+" = 'room'", e.in(t.RoomColumn, e.memberRooms(ReadScope(t.Name)))))
		// Only the owner itself writes, and shares only into its own rooms.
		write := and(e.is(t.Entity), or(vis+" <> 'room'", e.in(t.RoomColumn, e.memberRooms(""))))
		return rules{sel: sel, ins: write, upd: e.is(t.Entity), updCheck: write, del: e.is(t.Entity)}
	case Inherit:
		owned := e.owns(t.ParentKey, t.Parent, t.ParentOwner)
		return rules{sel: e.visible(t.ParentKey, t.Parent), ins: owned, upd: owned, del: owned}
	case Link:
		// Linking needs both sides; either side's owner may unlink.
		parent, other := e.owns(t.ParentKey, t.Parent, t.ParentOwner), e.owns(t.OtherKey, t.Other, t.OtherOwner)
		sel := and(e.visible(t.ParentKey, t.Parent), e.visible(t.OtherKey, t.Other))
		return rules{sel: sel, ins: and(parent, other), upd: or(parent, other), updCheck: and(parent, other), del: or(parent, other)}
	case Member:
		// A member of the row's room: a correlated EXISTS, read as the
		// caller, which PostgreSQL runs as a hashed sub-plan (the set of
		// the entity's rooms, built once per statement), so the user's own
		// index order still serves a page read (an "= ANY(ARRAY(...))"
		// form, estimated at a few rows, made the planner sort every row of
		// the room: 158 ms against 0.18 ms for a 20-row page of a
		// 10,000-row room, docs/BENCHMARKS.md). The tenant is compared
		// explicitly, so the answer holds whatever the membership table's
		// own policies are (shadow mode's open switch included).
		m := *t.Membership
		schema := e.s
		if m.Schema != "" {
			schema = ident(m.Schema)
		}
		mr := rel{aliasPrefix + "mem"}
		member := fmt.Sprintf("EXISTS (SELECT 1 FROM %s.%s %s WHERE %s = %s AND %s = %s AND %s = %s)", schema, ident(m.Table), mr.alias,
			mr.col(m.Room), e.row.col(t.RoomColumn), mr.col(m.tenantColumn()), e.tenant(), mr.col(m.Entity), e.entity())
		write := and(e.is(t.Entity), member)
		return rules{sel: member, ins: write, upd: write, del: write}
	case Worlds:
		owner := e.is("owner_id")
		return rules{sel: or(owner, e.in("id", e.memberWorlds())), ins: owner, upd: owner, del: owner}
	case Rooms:
		sel := or(e.in("id", e.memberRooms(ScopeRooms)), e.in("world_id", e.ownedWorlds()))
		// A room binds only to a parent (message server) the caller owns.
		bound := "true"
		if t.Parent != "" {
			bound = or(e.row.col(t.ParentKey)+" IS NULL", e.owns(t.ParentKey, t.Parent, t.ParentOwner))
		}
		managed := e.in("id", e.managedRooms())
		return rules{sel: sel, ins: and(e.in("world_id", e.ownedWorlds()), bound),
			upd: managed, updCheck: and(managed, bound), del: e.in("id", e.ownedRooms())}
	case Participants:
		// Room owners (and the world's owner) manage every participant; room
		// admins only plain members; anyone joins an open room as a member
		// and leaves any room.
		manage := or(e.in("room_id", e.ownedRooms()), and(e.row.col("role")+" = 'member'", e.in("room_id", e.managedRooms())))
		join := and(e.is("entity_id"), e.row.col("role")+" = 'member'", fmt.Sprintf("%s.room_is_open(%s)", e.s, e.row.col("room_id")))
		sel := or(e.is("entity_id"), e.in("room_id", e.memberRooms(ScopeRooms)), e.in("room_id", e.managedRooms()))
		return rules{sel: sel, ins: or(manage, join), upd: manage, del: or(manage, e.is("entity_id"))}
	case Delegations:
		agents := e.owns("agent_id", "agents", "owner_id")
		principal := e.is("principal_id")
		return rules{sel: or(e.is("agent_id"), principal, agents), ins: principal, upd: or(principal, agents),
			// The agent's owner may only revoke: a row it writes must be
			// revoked, so it can't grant itself someone else's authority.
			updCheck: or(principal, and(agents, e.row.col("revoked_at")+" IS NOT NULL")),
			del:      or(principal, agents)}
	}
	panic(fmt.Sprintf("rls: no rules for kind %s", t.Kind))
}
