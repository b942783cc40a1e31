package rls

import (
	"fmt"
	"regexp"
	"strings"
)

// Kind is how a table's rows are isolated inside a tenant (layer 2).
// Every kind also gets layer 1: rows of other tenants are invisible and
// can't be written.
type Kind int

const (
	// Tenant: layer 1 only; every entity of the tenant sees and writes rows.
	Tenant Kind = iota
	// Entities: bulkhead's entity directory: every entity of the tenant
	// reads it; an entity updates only its own row (Entity column = itself);
	// an entity may create agent entities (kind = 'agent'), nothing else.
	Entities
	// Owned: every entity of the tenant reads the rows; only the entity in
	// the Entity column writes them.
	Owned
	// Private: only the entity in the Entity column reads or writes the row
	// (delegation does not extend it).
	Private
	// Room: strict. Only participants of the room in the Room column read the
	// rows, and only with an entity in context; a row is written only by its
	// author (the Entity column) as itself or as the principal it acts for
	// under a valid delegation, and the author must be a participant.
	Room
	// Visibility: rows carry a visibility column: 'private' (the owner, or an
	// agent acting for the owner), 'room' (participants of the Room column's
	// room) or 'tenant' (everyone in the tenant). Only the owner writes.
	Visibility
	// Inherit: a row is visible when its parent row (Parent, through
	// ParentKey) is visible, and written only by the parent's owner
	// (ParentOwner).
	Inherit
	// Worlds: bulkhead's worlds: the owner and participants of its rooms
	// read; the owner writes.
	Worlds
	// Rooms: bulkhead's rooms: participants and the world's owner read; the
	// world's owner creates; room owners/admins and the world owner manage.
	Rooms
	// Participants: bulkhead's room membership: members of the same room
	// read; room owners/admins (and the world's owner) add and remove; an
	// entity may join an open room as a plain member and may leave.
	Participants
	// Delegations: bulkhead's delegations: the agent, the principal and the
	// agent's owner read; only the principal grants; the principal or the
	// agent's owner revokes.
	Delegations
	// Agents: bulkhead's agents: every entity of the tenant reads them; only
	// the owner (Entity column) writes, and a new row must be an agent
	// entity (nobody adopts a user, or any other entity, as its agent).
	Agents
	// Link: a junction between two owned tables (Parent via ParentKey, Other
	// via OtherKey): visible when both ends are; created only by an entity
	// owning both ends; removed by the owner of either end.
	Link
	// Member: room-scoped over a membership relation the table declares
	// (Membership), for schemas bulkhead did not create. Only an entity that
	// is a member of the row's room (RoomColumn) reads the row; a row is
	// written only by its author (the Entity column) as itself, and only
	// into a room it is a member of. No delegation extends it. The
	// membership table is read as the caller, its own policies applying.
	Member
)

var kindNames = [...]string{"tenant", "entities", "owned", "private", "room", "visibility", "inherit", "worlds", "rooms", "participants", "delegations", "agents", "link", "member"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}

// Command is an SQL command a role may run on a table.
type Command string

// The DML commands. The runtime role never gets TRUNCATE, TRIGGER or REFERENCES.
const (
	Select Command = "SELECT"
	Insert Command = "INSERT"
	Update Command = "UPDATE"
	Delete Command = "DELETE"
)

// AllCommands is SELECT, INSERT, UPDATE, DELETE.
var AllCommands = []Command{Select, Insert, Update, Delete}

// Table declares one tenant table.
type Table struct {
	Name string // unqualified; it lives in Config.Schema
	Kind Kind
	// TenantColumn holds the tenant id; default "tenant_id". (The tenants
	// table itself uses "id".)
	TenantColumn string
	// Entity is the owning entity column (Self, Owned, Private, Visibility)
	// or the author column (Room).
	Entity string
	// RoomColumn names the room column (Room, Visibility).
	RoomColumn string
	// Parent, ParentKey, ParentOwner: for Inherit and Link, the parent
	// table, the column of this table referencing the parent's id, and the
	// parent's owner column. For Rooms (optional): a table a room may bind to
	// (message servers), only when the caller owns the referenced row.
	Parent, ParentKey, ParentOwner string
	// Other, OtherKey, OtherOwner: for Link, the second end.
	Other, OtherKey, OtherOwner string
	// UpdateColumns lists the columns the runtime role may UPDATE; nil means every
	// column. Identity columns that no rule should move (a room's world, a
	// participant's room) are left out, so PostgreSQL refuses the UPDATE.
	UpdateColumns []string
	// Grants are the commands the runtime role may run; default all four.
	Grants []Command
	// Membership (Member) is the relation that makes an entity a member
	// of a room.
	Membership *Membership
	// Indexes lists extra columns to index after the tenant column, one
	// index each (the generator adds those its policies need).
	Indexes []string
}

// Membership names a table relating entities to rooms (kind Member): a row
// (TenantColumn, Room, Entity) makes Entity a member of Room in that tenant.
type Membership struct {
	Schema       string // the table's schema; default Config.Schema
	Table        string
	TenantColumn string // default "tenant_id"
	Room         string // the column holding the room
	Entity       string // the column holding the member entity
}

func (m Membership) tenantColumn() string {
	if m.TenantColumn == "" {
		return "tenant_id"
	}
	return m.TenantColumn
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (t Table) tenantColumn() string {
	if t.TenantColumn == "" {
		return "tenant_id"
	}
	return t.TenantColumn
}

func (t Table) grants() []Command {
	if t.Grants == nil {
		return AllCommands
	}
	return t.Grants
}

// validate checks identifiers (they are spliced into SQL) and that each
// kind has the columns it needs.
func (t Table) validate() error {
	names := map[string]string{"name": t.Name, "tenant column": t.tenantColumn()}
	need := func(what, v string) {
		names[what] = v
	}
	switch t.Kind {
	case Entities, Owned, Private, Room, Agents:
		need("entity column", t.Entity)
	case Member:
		need("entity column", t.Entity)
		need("room column", t.RoomColumn)
		if t.Membership == nil {
			return fmt.Errorf("table %s (%s): no membership relation", t.Name, t.Kind)
		}
		m := *t.Membership
		if m.Table == t.Name {
			// A policy reading its own table recurses (refused by name,
			// whatever the schema).
			return fmt.Errorf("table %s (%s): the membership relation can't be a table of the same name", t.Name, t.Kind)
		}
		need("membership table", m.Table)
		need("membership tenant column", m.tenantColumn())
		need("membership room column", m.Room)
		need("membership entity column", m.Entity)
		if m.Schema != "" {
			need("membership schema", m.Schema)
		}
	case Visibility:
		need("entity column", t.Entity)
		need("room column", t.RoomColumn)
	case Inherit:
		need("parent", t.Parent)
		need("parent key", t.ParentKey)
		need("parent owner", t.ParentOwner)
	case Link:
		need("parent", t.Parent)
		need("parent key", t.ParentKey)
		need("parent owner", t.ParentOwner)
		need("other", t.Other)
		need("other key", t.OtherKey)
		need("other owner", t.OtherOwner)
	case Rooms:
		if t.Parent != "" {
			need("parent key", t.ParentKey)
			need("parent owner", t.ParentOwner)
		}
	case Tenant, Worlds, Participants, Delegations:
	default:
		return fmt.Errorf("table %s: unknown kind %d", t.Name, t.Kind)
	}
	if t.Kind == Room {
		need("room column", t.RoomColumn)
	}
	for what, v := range names {
		if !identRE.MatchString(v) {
			return fmt.Errorf("table %s (%s): %s %q is not a plain lower-case identifier", t.Name, t.Kind, what, v)
		}
	}
	if strings.HasPrefix(t.Name, aliasPrefix) {
		return fmt.Errorf("table %s: names starting with %q are reserved for the generator's sub-query aliases", t.Name, aliasPrefix)
	}
	for _, c := range append(append([]string{}, t.Indexes...), t.UpdateColumns...) {
		if !identRE.MatchString(c) {
			return fmt.Errorf("table %s: column %q is not a plain identifier", t.Name, c)
		}
	}
	for _, g := range t.grants() {
		switch g {
		case Select, Insert, Update, Delete:
		default:
			return fmt.Errorf("table %s: grant %q is not a DML command", t.Name, g)
		}
	}
	return nil
}
