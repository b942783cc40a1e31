// Package model is the reference model of bulkhead's isolation rules: who
// may see and write which row, written in plain Go from DESIGN.md's table of
// rules and the rls.Kind documentation, and evaluated on data rather than
// on SQL. It shares nothing with the policy generator but the table
// declarations (the specification both start from).
//
// The verifier (postgres/verify_test.go) runs every statement shape as the
// runtime role on real PostgreSQL and compares what PostgreSQL did with what
// this model predicts; `bulkhead policy show` prints the model's matrix, and
// docs/POLICIES.md is that print.
package model

import (
	"slices"
	"time"

	"github.com/bulkhead-dev/bulkhead/rls"
	"github.com/google/uuid"
)

// Row is one row: column name → value (uuid.UUID, string, bool, int,
// []string, time.Time or nil).
type Row map[string]any

// With returns a copy of r with the assignments in set applied.
func (r Row) With(set Row) Row {
	out := Row{}
	for k, v := range r {
		out[k] = v
	}
	for k, v := range set {
		out[k] = v
	}
	return out
}

func (r Row) id(col string) uuid.UUID {
	v, _ := r[col].(uuid.UUID)
	return v
}

func (r Row) str(col string) string {
	v, _ := r[col].(string)
	return v
}

// Caller is who runs a statement: a zero Tenant is no context at all; a
// zero Entity is tenant-wide access only.
type Caller struct {
	Name      string // a label for reports: "alice", "agent-full-for-alice"
	Relation  string // what it is, for the matrix: "room owner, world owner"
	Tenant    uuid.UUID
	Entity    uuid.UUID
	ActingFor uuid.UUID
}

// Model decides, for one state of the world, what each caller may do.
type Model struct {
	Tables map[string]rls.Table // declarations, by name
	Rows   map[string][]Row     // the world's rows, by table
	Now    time.Time
}

// New returns a model over rows for the declared tables.
func New(tables []rls.Table, rows map[string][]Row, now time.Time) *Model {
	m := &Model{Tables: map[string]rls.Table{}, Rows: rows, Now: now}
	for _, t := range tables {
		m.Tables[t.Name] = t
	}
	return m
}

func tenantCol(t rls.Table) string {
	if t.TenantColumn != "" {
		return t.TenantColumn
	}
	return "tenant_id"
}

// inTenant: layer 1. A row belongs to the caller's tenant, and there is one.
func (m *Model) inTenant(c Caller, t rls.Table, r Row) bool {
	return c.Tenant != uuid.Nil && r.id(tenantCol(t)) == c.Tenant
}

// find returns the row of table in the caller's tenant whose col is v.
func (m *Model) find(c Caller, table, col string, v uuid.UUID) (Row, bool) {
	for _, r := range m.Rows[table] {
		if r.id("tenant_id") == c.Tenant && r.id(col) == v && v != uuid.Nil {
			return r, true
		}
	}
	return nil, false
}

// delegationValid: agent acts for principal now, with scope.
func (m *Model) delegationValid(c Caller, scope string) bool {
	for _, d := range m.Rows["delegations"] {
		if d.id("tenant_id") != c.Tenant || d.id("agent_id") != c.Entity || d.id("principal_id") != c.ActingFor {
			continue
		}
		if d["revoked_at"] != nil {
			continue
		}
		if exp, ok := d["expires_at"].(time.Time); ok && !exp.After(m.Now) {
			continue
		}
		if scopes, _ := d["scopes"].([]string); slices.Contains(scopes, scope) {
			return true
		}
	}
	return false
}

// actors: whom the caller may act as for scope ("" = itself only).
func (m *Model) actors(c Caller, scope string) []uuid.UUID {
	if c.Entity == uuid.Nil {
		return nil
	}
	if c.ActingFor != uuid.Nil && scope != "" && m.delegationValid(c, scope) {
		return []uuid.UUID{c.Entity, c.ActingFor}
	}
	return []uuid.UUID{c.Entity}
}

func (m *Model) participant(c Caller, room, entity uuid.UUID) (Row, bool) {
	for _, p := range m.Rows["participants"] {
		if p.id("tenant_id") == c.Tenant && p.id("room_id") == room && p.id("entity_id") == entity {
			return p, true
		}
	}
	return nil, false
}

// member: one of the caller's actors for scope participates in room.
func (m *Model) member(c Caller, scope string, room uuid.UUID) bool {
	for _, a := range m.actors(c, scope) {
		if _, ok := m.participant(c, room, a); ok {
			return true
		}
	}
	return false
}

// memberOf: the caller's own entity is a member of room through t's
// declared membership relation, in the caller's tenant (kind Member).
func (m *Model) memberOf(c Caller, t rls.Table, room uuid.UUID) bool {
	ms := t.Membership
	if ms == nil || c.Entity == uuid.Nil || room == uuid.Nil {
		return false
	}
	tc := ms.TenantColumn
	if tc == "" {
		tc = "tenant_id"
	}
	for _, r := range m.Rows[ms.Table] {
		if r.id(tc) == c.Tenant && r.id(ms.Room) == room && r.id(ms.Entity) == c.Entity {
			return true
		}
	}
	return false
}

// worldOwner: the caller owns the world of room.
func (m *Model) worldOwner(c Caller, room uuid.UUID) bool {
	r, ok := m.find(c, "rooms", "id", room)
	if !ok {
		return false
	}
	w, ok := m.find(c, "worlds", "id", r.id("world_id"))
	return ok && c.Entity != uuid.Nil && w.id("owner_id") == c.Entity
}

// roomRole: the caller's own role in room ("" if none).
func (m *Model) roomRole(c Caller, room uuid.UUID) string {
	if c.Entity == uuid.Nil {
		return ""
	}
	p, ok := m.participant(c, room, c.Entity)
	if !ok {
		return ""
	}
	return p.str("role")
}

// ownsRoom: owner participant, or owner of the room's world.
func (m *Model) ownsRoom(c Caller, room uuid.UUID) bool {
	return m.roomRole(c, room) == "owner" || m.worldOwner(c, room)
}

// managesRoom: owner or admin participant, or owner of the world.
func (m *Model) managesRoom(c Caller, room uuid.UUID) bool {
	return m.ownsRoom(c, room) || m.roomRole(c, room) == "admin"
}

// owns: the row of table with id v is owned (ownerCol) by the caller.
func (m *Model) owns(c Caller, table, ownerCol string, v uuid.UUID) bool {
	r, ok := m.find(c, table, "id", v)
	return ok && c.Entity != uuid.Nil && r.id(ownerCol) == c.Entity
}

// is: the row's column holds the caller's own entity.
func is(c Caller, r Row, col string) bool { return c.Entity != uuid.Nil && r.id(col) == c.Entity }

// Visible reports whether c sees row r of table.
func (m *Model) Visible(c Caller, table string, r Row) bool {
	t := m.Tables[table]
	if !m.inTenant(c, t, r) {
		return false
	}
	switch t.Kind {
	case rls.Tenant, rls.Entities, rls.Owned, rls.Agents:
		return true
	case rls.Private:
		return is(c, r, t.Entity)
	case rls.Room:
		return m.member(c, rls.ReadScope(t.Name), r.id(t.RoomColumn))
	case rls.Visibility:
		switch {
		case r.str("visibility") == "tenant":
			return true
		case slices.Contains(m.actors(c, rls.ReadScope(t.Name)), r.id(t.Entity)):
			return true
		default:
			return r.str("visibility") == "room" && m.member(c, rls.ReadScope(t.Name), r.id(t.RoomColumn))
		}
	case rls.Inherit:
		p, ok := m.find(c, t.Parent, "id", r.id(t.ParentKey))
		return ok && m.Visible(c, t.Parent, p)
	case rls.Link:
		p, ok1 := m.find(c, t.Parent, "id", r.id(t.ParentKey))
		o, ok2 := m.find(c, t.Other, "id", r.id(t.OtherKey))
		return ok1 && ok2 && m.Visible(c, t.Parent, p) && m.Visible(c, t.Other, o)
	case rls.Member:
		return m.memberOf(c, t, r.id(t.RoomColumn))
	case rls.Worlds:
		if is(c, r, "owner_id") {
			return true
		}
		for _, room := range m.Rows["rooms"] {
			if room.id("tenant_id") == c.Tenant && room.id("world_id") == r.id("id") && m.member(c, rls.ScopeRooms, room.id("id")) {
				return true
			}
		}
		return false
	case rls.Rooms:
		return m.member(c, rls.ScopeRooms, r.id("id")) || m.owns(c, "worlds", "owner_id", r.id("world_id"))
	case rls.Participants:
		return is(c, r, "entity_id") || m.member(c, rls.ScopeRooms, r.id("room_id")) || m.managesRoom(c, r.id("room_id"))
	case rls.Delegations:
		return is(c, r, "agent_id") || is(c, r, "principal_id") || m.owns(c, "agents", "owner_id", r.id("agent_id"))
	}
	return false
}

// CanInsert reports whether c may insert r (RLS only; grants apart).
func (m *Model) CanInsert(c Caller, table string, r Row) bool {
	t := m.Tables[table]
	return m.inTenant(c, t, r) && m.write(c, t, r, "insert")
}

// UpdateUsing reports whether c's UPDATE may touch the existing row r.
func (m *Model) UpdateUsing(c Caller, table string, r Row) bool {
	t := m.Tables[table]
	return m.inTenant(c, t, r) && m.write(c, t, r, "update-old")
}

// UpdateCheck reports whether the row an UPDATE by c produces may stand.
func (m *Model) UpdateCheck(c Caller, table string, r Row) bool {
	t := m.Tables[table]
	return m.inTenant(c, t, r) && m.write(c, t, r, "update-new")
}

// CanDelete reports whether c may delete r.
func (m *Model) CanDelete(c Caller, table string, r Row) bool {
	t := m.Tables[table]
	return m.inTenant(c, t, r) && m.write(c, t, r, "delete")
}

// write is layer 2 for writes; op is insert, update-old, update-new or delete.
func (m *Model) write(c Caller, t rls.Table, r Row, op string) bool {
	switch t.Kind {
	case rls.Tenant:
		return true
	case rls.Entities:
		if op == "insert" {
			return c.Entity != uuid.Nil && r.str("kind") == "agent"
		}
		return op != "delete" && is(c, r, t.Entity)
	case rls.Owned, rls.Private:
		return is(c, r, t.Entity)
	case rls.Agents:
		if op == "insert" {
			e, ok := m.find(c, "entities", "id", r.id("id"))
			return is(c, r, t.Entity) && ok && e.str("kind") == "agent"
		}
		return is(c, r, t.Entity)
	case rls.Room:
		// The author is the caller, or its principal under a delegation
		// holding the write scope, and participates in the room.
		author := r.id(t.Entity)
		if !slices.Contains(m.actors(c, rls.WriteScope(t.Name)), author) {
			return false
		}
		_, ok := m.participant(c, r.id(t.RoomColumn), author)
		return ok
	case rls.Visibility:
		if !is(c, r, t.Entity) {
			return false
		}
		if op == "update-old" || op == "delete" {
			return true
		}
		return r.str("visibility") != "room" || m.member(c, "", r.id(t.RoomColumn))
	case rls.Inherit:
		return m.owns(c, t.Parent, t.ParentOwner, r.id(t.ParentKey))
	case rls.Link:
		p := m.owns(c, t.Parent, t.ParentOwner, r.id(t.ParentKey))
		o := m.owns(c, t.Other, t.OtherOwner, r.id(t.OtherKey))
		if op == "insert" || op == "update-new" {
			return p && o
		}
		return p || o
	case rls.Member:
		// The author is the caller itself (no delegation), a member.
		return is(c, r, t.Entity) && m.memberOf(c, t, r.id(t.RoomColumn))
	case rls.Worlds:
		return is(c, r, "owner_id")
	case rls.Rooms:
		room := r.id("id")
		bound := true
		if t.Parent != "" && r[t.ParentKey] != nil {
			bound = m.owns(c, t.Parent, t.ParentOwner, r.id(t.ParentKey))
		}
		switch op {
		case "insert":
			w, ok := m.find(c, "worlds", "id", r.id("world_id"))
			return ok && is(c, w, "owner_id") && bound
		case "update-old":
			return m.managesRoom(c, room)
		case "update-new":
			return m.managesRoom(c, room) && bound
		default:
			return m.ownsRoom(c, room)
		}
	case rls.Participants:
		room := r.id("room_id")
		manage := m.ownsRoom(c, room) || (r.str("role") == "member" && m.managesRoom(c, room))
		switch op {
		case "insert":
			open := false
			if rm, ok := m.find(c, "rooms", "id", room); ok {
				open, _ = rm["is_open"].(bool)
			}
			return manage || (is(c, r, "entity_id") && r.str("role") == "member" && open)
		case "delete":
			return manage || is(c, r, "entity_id")
		default:
			return manage
		}
	case rls.Delegations:
		principal := is(c, r, "principal_id")
		agentOwner := m.owns(c, "agents", "owner_id", r.id("agent_id"))
		switch op {
		case "insert":
			return principal
		case "update-new":
			return principal || (agentOwner && r["revoked_at"] != nil)
		default:
			return principal || agentOwner
		}
	}
	return false
}

// Granted reports whether the runtime role holds the privilege for cmd on
// table (and, for UPDATE, on every column in cols).
func (m *Model) Granted(table, cmd string, cols []string) bool {
	t := m.Tables[table]
	grants := t.Grants
	if grants == nil {
		grants = rls.AllCommands
	}
	if !slices.Contains(grants, rls.Command(cmd)) {
		return false
	}
	if cmd == "UPDATE" && t.UpdateColumns != nil {
		for _, c := range cols {
			if !slices.Contains(t.UpdateColumns, c) {
				return false
			}
		}
	}
	return true
}
