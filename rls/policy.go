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

// expressions used by the policies; each helper runs once per statement.
type expr struct{ s string }

func (e expr) fn(name string) string { return "(SELECT " + e.s + "." + name + "())" }

// arr is an array-valued helper, cast so that "= ANY(...)" takes the array
// form (evaluated once, as an InitPlan) rather than the sub-query form.
func (e expr) arr(name string) string { return e.fn(name) + "::uuid[]" }

func (e expr) tenant() string            { return e.fn("current_tenant") }
func (e expr) entity() string            { return e.fn("current_entity") }
func (e expr) actors() string            { return e.arr("current_actors") }
func (e expr) memberRooms() string       { return e.arr("member_rooms") }
func (e expr) managedRooms() string      { return e.arr("managed_rooms") }
func (e expr) memberWorlds() string      { return e.arr("member_worlds") }
func (e expr) ownedWorlds() string       { return e.arr("owned_worlds") }
func (e expr) isActor(col string) string { return col + " = ANY(" + e.actors() + ")" }

// myRooms is the rooms the entity (or the principal it acts for)
// participates in, read as the caller: participants' own policy lets an
// entity see its own membership rows before it would call a definer
// helper, so this costs one index scan inside the statement's plan.
func (e expr) myRooms() string {
	return fmt.Sprintf("ARRAY(SELECT p.room_id FROM %s.participants p WHERE p.tenant_id = %s AND p.entity_id = ANY(%s))", e.s, e.tenant(), e.actors())
}

// isParticipant is true when the entity in column col participates in the
// room in column room, read as the caller (see myRooms).
func (e expr) isParticipant(room, col string) string {
	return fmt.Sprintf("EXISTS (SELECT 1 FROM %s.participants p WHERE p.tenant_id = %s AND p.room_id = %s AND p.entity_id = %s)", e.s, e.tenant(), room, col)
}
func (e expr) isEntity(col string) string {
	return col + " = " + e.entity()
}

// Policies returns the policies Generate installs on t, layer 1 first.
// The self-check compares a database's policies with this list.
func Policies(cfg Config, t Table) ([]Policy, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	e := expr{cfg.Schema}
	layer1 := t.tenantColumn() + " = " + e.tenant()
	ps := []Policy{{Name: TenantPolicy, Command: "ALL", Permissive: true, Using: layer1, Check: layer1}}

	var sel, ins, upd, del string // "" = no layer-2 rule for that command
	var updCheck string
	switch t.Kind {
	case Tenant:
	case Entities:
		ins = "kind = 'agent' AND " + e.entity() + " IS NOT NULL"
		upd = e.isEntity(t.Entity)
	case Owned:
		ins, upd, del = e.isEntity(t.Entity), e.isEntity(t.Entity), e.isEntity(t.Entity)
	case Private:
		sel, ins, upd, del = e.isEntity(t.Entity), e.isEntity(t.Entity), e.isEntity(t.Entity), e.isEntity(t.Entity)
	case Room:
		member := t.RoomColumn + " = ANY(" + e.myRooms() + ")"
		sel = member
		ins = e.isActor(t.Entity) + " AND " + e.isParticipant(t.RoomColumn, t.Entity)
		upd, updCheck = e.isActor(t.Entity)+" AND "+member, ins
		del = e.isActor(t.Entity) + " AND " + member
	case Visibility:
		owner := e.isActor(t.Entity)
		sel = fmt.Sprintf("visibility = 'tenant' OR %s OR (visibility = 'room' AND %s = ANY(%s))", owner, t.RoomColumn, e.myRooms())
		writer := e.isEntity(t.Entity)
		ins = fmt.Sprintf("%s AND (visibility <> 'room' OR %s = ANY(%s))", writer, t.RoomColumn, e.myRooms())
		upd, updCheck, del = writer, ins, writer
	case Inherit:
		sel = fmt.Sprintf("%s = ANY(ARRAY(SELECT p.id FROM %s.%s p))", t.ParentKey, cfg.Schema, t.Parent)
		ins = fmt.Sprintf("%s = ANY(ARRAY(SELECT p.id FROM %s.%s p WHERE p.%s = %s))", t.ParentKey, cfg.Schema, t.Parent, t.ParentOwner, e.entity())
		upd, del = ins, ins
	case Worlds:
		sel = fmt.Sprintf("owner_id = %s OR id = ANY(%s)", e.entity(), e.memberWorlds())
		ins, upd, del = e.isEntity("owner_id"), e.isEntity("owner_id"), e.isEntity("owner_id")
	case Rooms:
		sel = fmt.Sprintf("id = ANY(%s) OR world_id = ANY(%s)", e.myRooms(), e.ownedWorlds())
		ins = "world_id = ANY(" + e.ownedWorlds() + ")"
		upd = fmt.Sprintf("id = ANY(%s) OR world_id = ANY(%s)", e.managedRooms(), e.ownedWorlds())
		del = upd
	case Participants:
		// Own rows first: OR stops there, and the definer helpers (InitPlans,
		// run on first use) are not called at all for them.
		sel = fmt.Sprintf("entity_id = %s OR room_id = ANY(%s) OR room_id = ANY(%s)", e.entity(), e.memberRooms(), e.managedRooms())
		ins = fmt.Sprintf("room_id = ANY(%s) OR (entity_id = %s AND role = 'member' AND %s.room_is_open(room_id))",
			e.managedRooms(), e.entity(), cfg.Schema)
		upd = "room_id = ANY(" + e.managedRooms() + ")"
		del = fmt.Sprintf("room_id = ANY(%s) OR entity_id = %s", e.managedRooms(), e.entity())
	case Delegations:
		ownedAgents := fmt.Sprintf("agent_id = ANY(ARRAY(SELECT a.id FROM %s.agents a WHERE a.owner_id = %s))", cfg.Schema, e.entity())
		sel = fmt.Sprintf("agent_id = %s OR principal_id = %s OR %s", e.entity(), e.entity(), ownedAgents)
		ins = e.isEntity("principal_id")
		upd = fmt.Sprintf("principal_id = %s OR %s", e.entity(), ownedAgents)
		// The agent's owner may only revoke: a row it writes must be revoked,
		// so it can't grant itself someone else's authority.
		updCheck = fmt.Sprintf("principal_id = %s OR (%s AND revoked_at IS NOT NULL)", e.entity(), ownedAgents)
		del = upd
	}
	if updCheck == "" {
		updCheck = upd
	}
	add := func(cmd, using, check string) {
		if using == "" && check == "" {
			return
		}
		ps = append(ps, Policy{Name: policyPrefix + strings.ToLower(cmd), Command: cmd, Using: using, Check: check})
	}
	add("SELECT", sel, "")
	add("INSERT", "", ins)
	add("UPDATE", upd, updCheck)
	add("DELETE", del, "")
	return ps, nil
}
