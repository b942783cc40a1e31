package model

import "strings"

// Specs list, per table, the values new rows take (inserts) and the
// assignments updates make: every column that carries identity or
// authority, plus one harmless column. "@name" is the fixture object name
// in tenant t1; "@now" is the current time.
// Spec is a table's candidate writes.
type Spec struct {
	Inserts []Row // values of new rows
	Updates []Row // assignments
}

// Specs are the candidate writes, per table.
var Specs = map[string]Spec{
	"tenants":  {Inserts: []Row{{"name": "x"}}, Updates: []Row{{"name": "x"}}},
	"entities": {Inserts: []Row{{"kind": "agent"}, {"kind": "user"}}, Updates: []Row{{"name": "x"}, {"kind": "user"}, {"kind": "agent"}}},
	"users":    {Inserts: []Row{{"id": "@ag-spare"}}, Updates: []Row{{"password_hash": "x"}, {"id": "@ag-spare"}}},
	"agents": {
		Inserts: []Row{{"id": "@ag-spare", "owner_id": "@alice"}, {"id": "@ag-spare", "owner_id": "@bob"}, {"id": "@bob", "owner_id": "@alice"}, {"id": "@dave", "owner_id": "@dave"}},
		Updates: []Row{{"name": "x"}, {"owner_id": "@bob"}},
	},
	"delegations": {
		Inserts: []Row{{"agent_id": "@ag-dave", "principal_id": "@alice"}, {"agent_id": "@ag-dave", "principal_id": "@bob"},
			{"agent_id": "@ag-full", "principal_id": "@carol"}, {"agent_id": "@ag-docs", "principal_id": "@dave"}},
		Updates: []Row{{"revoked_at": nil}, {"revoked_at": "@now"}, {"scopes": []string{"rooms:read", "memories:read", "memories:write", "documents:read"}},
			{"expires_at": nil}, {"principal_id": "@bob"}, {"agent_id": "@ag-dave"}},
	},
	"worlds": {Inserts: []Row{{"owner_id": "@alice"}, {"owner_id": "@bob"}, {"owner_id": "@erin"}}, Updates: []Row{{"name": "x"}, {"owner_id": "@bob"}}},
	"message_servers": {
		Inserts: []Row{{"owner_id": "@alice"}, {"owner_id": "@dave"}},
		Updates: []Row{{"name": "x"}, {"owner_id": "@bob"}},
	},
	"message_server_agents": {
		Inserts: []Row{{"message_server_id": "@s1", "agent_id": "@ag-dave"}, {"message_server_id": "@s2", "agent_id": "@ag-full"},
			{"message_server_id": "@s1", "agent_id": "@ag-docs"}},
		Updates: []Row{{"created_at": "@now"}},
	},
	"rooms": {
		Inserts: []Row{{"world_id": "@w1", "message_server_id": nil}, {"world_id": "@w2", "message_server_id": nil},
			{"world_id": "@w1", "message_server_id": "@s1"}, {"world_id": "@w1", "message_server_id": "@s2"}},
		Updates: []Row{{"name": "x"}, {"world_id": "@w2"}, {"message_server_id": "@s2"}, {"message_server_id": "@s1"}, {"message_server_id": nil}, {"is_open": true}},
	},
	"participants": {
		Inserts: []Row{{"room_id": "@r1", "entity_id": "@dave", "role": "member"}, {"room_id": "@r1", "entity_id": "@dave", "role": "admin"},
			{"room_id": "@r1", "entity_id": "@dave", "role": "owner"}, {"room_id": "@r2", "entity_id": "@alice", "role": "member"},
			{"room_id": "@r2", "entity_id": "@bob", "role": "member"}, {"room_id": "@r3", "entity_id": "@carol", "role": "member"},
			{"room_id": "@r2", "entity_id": "@ag-full", "role": "member"},
			// Joining an open room by oneself is as a member only.
			{"room_id": "@r2", "entity_id": "@bob", "role": "admin"}, {"room_id": "@r2", "entity_id": "@bob", "role": "owner"}},
		Updates: []Row{{"role": "member"}, {"role": "owner"}, {"role": "admin"}, {"room_id": "@r3"}},
	},
	"memories": {
		Inserts: []Row{{"room_id": "@r1", "author_id": "@alice"}, {"room_id": "@r1", "author_id": "@carol"}, {"room_id": "@r1", "author_id": "@dave"},
			{"room_id": "@r2", "author_id": "@dave"}, {"room_id": "@r2", "author_id": "@alice"}, {"room_id": "@r3", "author_id": "@alice"},
			{"room_id": "@r1", "author_id": "@ag-full"}},
		Updates: []Row{{"content": "x"}, {"room_id": "@r2"}, {"room_id": "@r1"}, {"author_id": "@alice"}, {"author_id": "@carol"}},
	},
	"documents": {
		Inserts: []Row{{"owner_id": "@alice", "visibility": "private", "room_id": nil}, {"owner_id": "@alice", "visibility": "room", "room_id": "@r1"},
			{"owner_id": "@alice", "visibility": "room", "room_id": "@r2"}, {"owner_id": "@dave", "visibility": "tenant", "room_id": nil},
			{"owner_id": "@bob", "visibility": "room", "room_id": "@r1"}},
		Updates: []Row{{"title": "x"}, {"visibility": "tenant", "room_id": nil}, {"visibility": "room", "room_id": "@r1"},
			{"visibility": "room", "room_id": "@r2"}, {"owner_id": "@alice"}, {"owner_id": "@dave"}},
	},
	"chunks": {
		Inserts: []Row{{"document_id": "@d1"}, {"document_id": "@d2"}, {"document_id": "@d3"}, {"document_id": "@d4"}},
		Updates: []Row{{"content": "x"}, {"document_id": "@d1", "ord": 7}, {"document_id": "@d4", "ord": 7}},
	},
	"audit_log":      {Inserts: []Row{{"actor_id": "@alice"}, {"actor_id": "@bob"}, {"actor_id": nil}}, Updates: []Row{{"action": "x"}}},
	"api_keys":       {Inserts: []Row{{"entity_id": "@alice"}, {"entity_id": "@bob"}}, Updates: []Row{{"revoked_at": "@now"}, {"entity_id": "@bob"}}},
	"refresh_tokens": {Inserts: []Row{{"entity_id": "@alice"}, {"entity_id": "@bob"}}, Updates: []Row{{"revoked_at": "@now"}, {"entity_id": "@bob"}}},
}

// Resolve replaces "@name" values by fixture ids of tenant t1.
func (f *Fixture) Resolve(r Row) Row {
	out := Row{}
	for k, val := range r {
		if s, ok := val.(string); ok && strings.HasPrefix(s, "@") {
			if s == "@now" {
				out[k] = f.Now
			} else {
				out[k] = f.ID("t1", s[1:])
			}
			continue
		}
		out[k] = val
	}
	return out
}
