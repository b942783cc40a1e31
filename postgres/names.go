package postgres

import "github.com/bulkhead-dev/bulkhead/rls"

// Names that are a stable contract for SQL users and other tools.
const (
	// Schema holds every bulkhead table and helper function.
	Schema = "bulkhead"
	// Database is the database name of the embedded cluster.
	Database = "bulkhead"

	// Owner owns the schema and runs migrations.
	Owner = "bulkhead_owner"
	// Runtime is the server's role: DML only, subject to RLS.
	Runtime = "bulkhead_app"
	// Maintenance runs explicitly cross-tenant jobs (BYPASSRLS, DML only).
	Maintenance = "bulkhead_maintenance"
	// Definer owns the allow-listed SECURITY DEFINER membership helpers; it
	// can't log in.
	Definer = "bulkhead_definer"
	// KeyService is the only role that reads the wrapped tenant keysets
	// (schema KeySchema); the runtime role has no access to them.
	KeyService = "bulkhead_keyservice"
	// KeySchema holds the wrapped keysets, the KEK check value and key events.
	KeySchema = "bulkhead_keys"

	// ContextExtension is the PostgreSQL extension (pgext/) that makes the
	// context settings superuser-only and defines bulkhead.enter(token).
	ContextExtension = "bulkhead_context"

	// TenantSetting, EntitySetting and ActingForSetting are the
	// transaction-local settings the policies read.
	TenantSetting    = "bulkhead.tenant_id"
	EntitySetting    = "bulkhead.entity_id"
	ActingForSetting = "bulkhead.acting_for"
)

// RLSConfig is the policy generator's configuration for bulkhead's schema.
var RLSConfig = rls.Config{
	Schema:           Schema,
	Runtime:          Runtime,
	Maintenance:      Maintenance,
	Owner:            Owner,
	Definer:          Definer,
	TenantSetting:    TenantSetting,
	EntitySetting:    EntitySetting,
	ActingForSetting: ActingForSetting,
	NativeMembership: true,
}

var readOnly = []rls.Command{rls.Select}

// Tables declares every tenant table of the core schema with its isolation
// kind. It is the single source the policies migration is generated from
// and the self-check compares the database with.
var Tables = []rls.Table{
	{Name: "tenants", Kind: rls.Tenant, TenantColumn: "id", Grants: readOnly},
	{Name: "entities", Kind: rls.Entities, Entity: "id", Grants: []rls.Command{rls.Select, rls.Insert, rls.Update},
		UpdateColumns: []string{"name", "metadata"}},
	{Name: "users", Kind: rls.Private, Entity: "id", Grants: []rls.Command{rls.Select, rls.Update},
		UpdateColumns: []string{"email", "password_hash"}},
	{Name: "agents", Kind: rls.Agents, Entity: "owner_id",
		UpdateColumns: []string{"name", "bio", "settings", "system_prompt", "secrets", "updated_at"}},
	{Name: "delegations", Kind: rls.Delegations, UpdateColumns: []string{"scopes", "expires_at", "revoked_at"}},
	{Name: "worlds", Kind: rls.Worlds, UpdateColumns: []string{"name", "metadata"}},
	{Name: "message_servers", Kind: rls.Owned, Entity: "owner_id", UpdateColumns: []string{"platform", "external_id", "name"}},
	{Name: "message_server_agents", Kind: rls.Link, Parent: "message_servers", ParentKey: "message_server_id", ParentOwner: "owner_id",
		Other: "agents", OtherKey: "agent_id", OtherOwner: "owner_id", Grants: []rls.Command{rls.Select, rls.Insert, rls.Delete}},
	{Name: "rooms", Kind: rls.Rooms, Parent: "message_servers", ParentKey: "message_server_id", ParentOwner: "owner_id",
		UpdateColumns: []string{"name", "message_server_id", "channel_id", "is_open"}, Indexes: []string{"message_server_id"}},
	{Name: "participants", Kind: rls.Participants, UpdateColumns: []string{"role"}},
	{Name: "memories", Kind: rls.Room, Entity: "author_id", RoomColumn: "room_id"},
	{Name: "documents", Kind: rls.Visibility, Entity: "owner_id", RoomColumn: "room_id"},
	{Name: "chunks", Kind: rls.Inherit, Parent: "documents", ParentKey: "document_id", ParentOwner: "owner_id"},
	{Name: "audit_log", Kind: rls.Owned, Entity: "actor_id", Grants: []rls.Command{rls.Insert}},
	{Name: "api_keys", Kind: rls.Private, Entity: "entity_id", UpdateColumns: []string{"revoked_at"}},
	{Name: "refresh_tokens", Kind: rls.Private, Entity: "entity_id", Indexes: []string{"family_id"}, UpdateColumns: []string{"used_at", "revoked_at"}},
}

// AllowedTriggers are the only triggers the self-check accepts on tables
// with row-level security ("table.trigger" -> trigger function): a trigger
// sees every row written, whatever the policies.
var AllowedTriggers = map[string]string{
	Schema + ".memories.memories_notify": Schema + ".notify_memory_inserted()",
}

// AuthFunctions are the SECURITY DEFINER functions of the authentication
// flows (migrations 00004, 00011, 00013 and 00014). All but
// auth_password_change answer only in a pre-authentication context (a
// tenant, no entity, no acting-for); auth_password_change answers only in
// an entity's own context (no acting-for) and changes only that entity's
// password. No credential hash leaves them: passwords and keyed hashes are
// compared inside. Like the generator's membership helpers they are owned
// by Definer and pin their search_path; the self-check accepts exactly
// these, NotifyFunctions and RLSConfig.DefinerFunctions() (docs/SECURITY.md lists
// what each can reveal).
var AuthFunctions = []string{"auth_password_params", "auth_password_check", "auth_register", "auth_api_key", "auth_refresh_token", "auth_password_reset", "auth_password_change", "auth_external"}

// NotifyFunctions are the SECURITY DEFINER functions of live delivery
// (migration 00011): notify_listen LISTENs on the channel of the tenant in
// a notifier context (a tenant, no entity). Owned by Definer with a pinned
// search_path; the self-check accepts these too.
var NotifyFunctions = []string{"notify_listen"}
