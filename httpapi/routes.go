package httpapi

import (
	"net/http"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/google/uuid"
)

// access says who may call a route.
type access int

const (
	public   access = iota // anyone (health, documents about the API)
	scoped                 // an authenticated principal, in its own scope
	operator               // the operator credential (control plane), never a tenant's
)

// route is one endpoint. The table below is the single source of the mux
// and of the OpenAPI document, so the two can't disagree.
type route struct {
	method, path, summary string
	access                access
	handler               func(http.ResponseWriter, *http.Request) error
	request               any // a value of the body type, or nil
	status                int // success status
	response              any // a value of the response type, or nil (no body)
}

func (s *Server) routes() []route {
	type entities = list[bulkhead.Entity]
	return []route{
		{"GET", "/healthz", "The process is alive", public, s.healthz, nil, 200, map[string]string{}},
		{"GET", "/readyz", "The database is reachable and the isolation self-check passes", public, s.readyz, nil, 200, map[string]string{}},
		{"GET", "/openapi.json", "This document", public, s.openapi, nil, 200, map[string]any{}},
		{"GET", "/.well-known/jwks.json", "Public keys verifying bulkhead's own access tokens", public, s.jwksDoc, nil, 200, jwkSet{}},

		{"POST", "/v1/tenants/{tenant_id}/auth/register", "Create an account (if the tenant allows it); 202 whether or not the email was new", public, s.register, registerInput{}, 202, map[string]string{}},
		{"POST", "/v1/tenants/{tenant_id}/auth/login", "Exchange email and password for tokens", public, s.login, loginInput{}, 200, auth.Tokens{}},
		{"POST", "/v1/tenants/{tenant_id}/auth/refresh", "Rotate a refresh token (reusing a spent one revokes its family)", public, s.refresh, refreshInput{}, 200, auth.Tokens{}},
		{"POST", "/v1/tenants/{tenant_id}/auth/logout", "Revoke a refresh token's family: the session ends, and the access tokens minted with it stop working", public, s.logout, refreshInput{}, 204, nil},
		{"POST", "/v1/tenants/{tenant_id}/auth/password-reset", "Set a new password with a single-use reset token issued by the operator; ends every session of the user (401 for any bad, spent or expired token)", public, s.redeemPasswordReset, passwordResetInput{}, 204, nil},
		{"POST", "/v1/me/password", "Change the caller's password (the current one is required); ends every session of the caller and answers with tokens of a new one", scoped, s.changePassword, passwordChangeInput{}, 200, auth.Tokens{}},
		{"POST", "/v1/api-keys", "Create an API key for the caller (the key is shown once)", scoped, s.createAPIKey, apiKeyInput{}, 201, apiKeyCreated{}},
		{"GET", "/v1/api-keys", "The caller's API keys (never their secrets)", scoped, s.listAPIKeys, nil, 200, list[postgres.APIKey]{}},
		{"DELETE", "/v1/api-keys/{id}", "Revoke one of the caller's API keys", scoped, s.revokeAPIKey, nil, 204, nil},

		{"GET", "/v1/me", "The caller's tenant and entity", scoped, s.me, nil, 200, map[string]any{}},
		{"GET", "/v1/entities", "The tenant's directory", scoped, s.listEntities, nil, 200, entities{}},
		{"GET", "/v1/entities/{id}", "One entity", scoped, s.getEntity, nil, 200, bulkhead.Entity{}},

		{"POST", "/v1/agents", "Create an agent owned by the caller (secrets are write-only)", scoped, s.createAgent, agentInput{}, 201, agentView{}},
		{"GET", "/v1/agents", "The tenant's agents (metadata only)", scoped, s.listAgents, nil, 200, list[agentView]{}},
		{"GET", "/v1/agents/{id}", "One agent: secret names and whether a prompt is set, never their values", scoped, s.getAgent, nil, 200, agentView{}},
		{"PUT", "/v1/agents/{id}", "Replace an agent you own", scoped, s.updateAgent, agentInput{}, 204, nil},
		{"DELETE", "/v1/agents/{id}", "Delete an agent you own", scoped, s.deleteAgent, nil, 204, nil},

		{"POST", "/v1/delegations", "Let an agent act for the caller", scoped, s.createDelegation, delegationInput{}, 201, bulkhead.Delegation{}},
		{"GET", "/v1/delegations", "Delegations the caller is party to", scoped, s.listDelegations, nil, 200, list[bulkhead.Delegation]{}},
		{"DELETE", "/v1/delegations/{id}", "Revoke a delegation", scoped, s.revokeDelegation, nil, 204, nil},

		{"POST", "/v1/worlds", "Create a world owned by the caller", scoped, s.createWorld, nameInput{}, 201, bulkhead.World{}},
		{"GET", "/v1/worlds/{id}", "One world", scoped, s.getWorld, nil, 200, bulkhead.World{}},

		{"POST", "/v1/rooms", "Create a room in a world you own", scoped, s.createRoom, roomInput{}, 201, bulkhead.Room{}},
		{"GET", "/v1/rooms", "Rooms the caller participates in", scoped, s.listRooms, nil, 200, list[bulkhead.Room]{}},
		{"GET", "/v1/rooms/{id}", "One room", scoped, s.getRoom, nil, 200, bulkhead.Room{}},
		{"GET", "/v1/rooms/{id}/participants", "A room's participants", scoped, s.listParticipants, nil, 200, list[bulkhead.Participant]{}},
		{"POST", "/v1/rooms/{id}/participants", "Add a participant (room owners and admins)", scoped, s.addParticipant, participantInput{}, 204, nil},
		{"POST", "/v1/rooms/{id}/join", "Join an open room", scoped, s.joinRoom, nil, 204, nil},
		{"DELETE", "/v1/rooms/{id}/participants/{entity_id}", "Remove a participant (admins) or leave", scoped, s.removeParticipant, nil, 204, nil},
		{"GET", "/v1/rooms/{id}/messages", "Room history, newest first", scoped, s.listMessages, nil, 200, list[bulkhead.Memory]{}},
		{"POST", "/v1/rooms/{id}/messages", "Post a message", scoped, s.postMessage, messageInput{}, 201, bulkhead.Memory{}},
		{"GET", "/v1/rooms/{id}/stream", "New messages of the room, live, over a WebSocket (header token, or ?ticket= from POST /v1/stream-tickets)", scoped, s.streamRoom, nil, 101, bulkhead.Memory{}},
		{"POST", "/v1/stream-tickets", "A single-use, 30-second ticket for a browser to open a room's stream", scoped, s.createStreamTicket, ticketInput{}, 201, streamTicket{}},

		{"POST", "/v1/message-servers", "Register an external platform", scoped, s.createMessageServer, messageServerInput{}, 201, bulkhead.MessageServer{}},
		{"GET", "/v1/message-servers/{id}/agents", "Agents connected to a platform", scoped, s.serverAgents, nil, 200, list[uuid.UUID]{}},
		{"POST", "/v1/message-servers/{id}/agents", "Connect an agent", scoped, s.linkAgent, agentRef{}, 204, nil},
		{"DELETE", "/v1/message-servers/{id}/agents/{agent_id}", "Disconnect an agent", scoped, s.unlinkAgent, nil, 204, nil},

		{"POST", "/v1/documents", "Store a document: chunked, embedded into the tenant's collection and indexed for full-text search (confidential ones are sealed)", scoped, s.createDocument, documentInput{}, 201, bulkhead.Document{}},
		{"GET", "/v1/documents", "Documents visible to the caller", scoped, s.listDocuments, nil, 200, list[bulkhead.Document]{}},
		{"GET", "/v1/documents/{id}", "One document", scoped, s.getDocument, nil, 200, bulkhead.Document{}},
		{"DELETE", "/v1/documents/{id}", "Delete a document you own, with its chunks and vectors", scoped, s.deleteDocument, nil, 204, nil},
		{"POST", "/v1/query", "Hybrid retrieval (full-text + vector, reciprocal rank fusion) over the documents visible to the caller", scoped, s.query, queryInput{}, 200, queryResult{}},
		{"POST", "/v1/answer", "An answer from the passages visible to the caller, citing them; says so when there are none", scoped, s.answer, queryInput{}, 200, retrieval.Answer{}},

		{"GET", "/admin/v1/tenants", "Every tenant (operator)", operator, s.adminListTenants, nil, 200, list[bulkhead.Tenant]{}},
		{"POST", "/admin/v1/tenants", "Create a tenant, its keys and its knowledge collection (operator)", operator, s.adminCreateTenant, tenantInput{}, 201, bulkhead.Tenant{}},
		{"DELETE", "/admin/v1/tenants/{id}", "Drop its collections, crypto-shred and delete a tenant with all its data (operator; 404 when there is no such tenant; ?force=true deletes it even if its collections can't be dropped, recording what is left)", operator, s.adminDeleteTenant, nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/provision", "Create the tenant's knowledge collection if missing (operator, idempotent)", operator, s.adminProvision, nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/reconcile", "Make the tenant's collection hold one vector per chunk: embed missing, remove orphans (operator, idempotent)", operator, s.adminReconcile, nil, 200, retrieval.ReconcileStats{}},
		{"POST", "/admin/v1/tenants/{id}/reembed", "Re-embed the tenant with another model without downtime: build, switch, drop (operator, resumable)", operator, s.adminReembed, reembedInput{}, 200, retrieval.ReconcileStats{}},
		{"POST", "/admin/v1/tenants/{id}/entities", "Provision an entity in a tenant (operator); with issuer and subject, pre-link an external subject: the entity gets the id its tokens name", operator, s.adminCreateEntity, entityInput{}, 201, bulkhead.Entity{}},
		{"POST", "/admin/v1/tenants/{id}/disable", "Disable a tenant: every credential of it gets 401 at once, on every server (operator; 404 when there is no such tenant)", operator, s.adminSetTenantDisabled(true), nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/enable", "Re-enable a disabled tenant (operator)", operator, s.adminSetTenantDisabled(false), nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/disable", "Disable an entity: its tokens, sessions and API keys get 401, it can't log in or refresh (operator; reversible)", operator, s.adminSetEntityDisabled(true), nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/enable", "Re-enable an entity: its sessions and keys that were not revoked work again (operator)", operator, s.adminSetEntityDisabled(false), nil, 204, nil},
		{"DELETE", "/admin/v1/tenants/{id}/entities/{entity_id}", "Delete an entity and everything it owns or wrote; its credentials die with it (operator; 404 when there is no such entity)", operator, s.adminDeleteEntity, nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/revoke-sessions", "End every session of an entity: refresh tokens revoked, access tokens minted before now refused (operator; API keys untouched)", operator, s.adminRevokeSessions, nil, 200, revokedCount{}},
		{"GET", "/admin/v1/tenants/{id}/entities/{entity_id}/api-keys", "An entity's API keys, never their secrets (operator)", operator, s.adminEntityAPIKeys, nil, 200, list[postgres.APIKey]{}},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/revoke-api-keys", "Revoke every API key of an entity (operator)", operator, s.adminRevokeEntityAPIKeys, nil, 200, revokedCount{}},
		{"DELETE", "/admin/v1/tenants/{id}/api-keys/{key_id}", "Revoke one API key of a tenant by id, whoever holds it (operator; idempotent; 404 when there is no such key)", operator, s.adminRevokeAPIKey, nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/password-reset", "Issue a single-use password reset token for a user (shown once; default life an hour; delivering it is the operator's business)", operator, s.adminIssuePasswordReset, resetIssueInput{}, 201, resetIssued{}},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/deactivate", "Deactivate an entity: its external tokens are refused even while unexpired (operator)", operator, s.adminSetEntityActive(false), nil, 204, nil},
		{"POST", "/admin/v1/tenants/{id}/entities/{entity_id}/activate", "Reactivate a deactivated entity (operator)", operator, s.adminSetEntityActive(true), nil, 204, nil},
		{"GET", "/admin/v1/tenants/{id}/issuers", "External issuers the tenant registered: tokens of an issuer trusted with a tenant claim may name only these tenants (operator)", operator, s.adminListIssuers, nil, 200, list[postgres.TenantIssuer]{}},
		{"POST", "/admin/v1/tenants/{id}/issuers", "Register an external issuer with the tenant, optionally creating entities just in time on first login; registering again changes jit (operator)", operator, s.adminAddIssuer, issuerInput{}, 200, postgres.TenantIssuer{}},
		{"POST", "/admin/v1/tenants/{id}/issuers/remove", "Unregister an external issuer: its tokens no longer name the tenant (operator; 404 when it was not registered)", operator, s.adminRemoveIssuer, issuerRef{}, 204, nil},
	}
}
