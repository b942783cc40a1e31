package httpapi

import (
	"net/http"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// route is one endpoint. The table below is the single source of the mux
// and of the OpenAPI document, so the two can't disagree.
type route struct {
	method, path, summary string
	authed                bool
	handler               func(http.ResponseWriter, *http.Request) error
	request               any // a value of the body type, or nil
	status                int // success status
	response              any // a value of the response type, or nil (no body)
}

func (s *Server) routes() []route {
	type entities = list[bulkhead.Entity]
	return []route{
		{"GET", "/healthz", "The process is alive", false, s.healthz, nil, 200, map[string]string{}},
		{"GET", "/readyz", "The database is reachable and the isolation self-check passes", false, s.readyz, nil, 200, map[string]string{}},
		{"GET", "/openapi.json", "This document", false, s.openapi, nil, 200, map[string]any{}},
		{"GET", "/.well-known/jwks.json", "Public keys verifying bulkhead's own access tokens", false, s.jwksDoc, nil, 200, map[string]any{}},

		{"GET", "/v1/me", "The caller's tenant and entity", true, s.me, nil, 200, map[string]any{}},
		{"GET", "/v1/entities", "The tenant's directory", true, s.listEntities, nil, 200, entities{}},
		{"GET", "/v1/entities/{id}", "One entity", true, s.getEntity, nil, 200, bulkhead.Entity{}},

		{"POST", "/v1/agents", "Create an agent owned by the caller (secrets are write-only)", true, s.createAgent, agentInput{}, 201, agentView{}},
		{"GET", "/v1/agents", "The tenant's agents (metadata only)", true, s.listAgents, nil, 200, list[agentView]{}},
		{"GET", "/v1/agents/{id}", "One agent: secret names and whether a prompt is set, never their values", true, s.getAgent, nil, 200, agentView{}},
		{"PUT", "/v1/agents/{id}", "Replace an agent you own", true, s.updateAgent, agentInput{}, 204, nil},
		{"DELETE", "/v1/agents/{id}", "Delete an agent you own", true, s.deleteAgent, nil, 204, nil},

		{"POST", "/v1/delegations", "Let an agent act for the caller", true, s.createDelegation, delegationInput{}, 201, bulkhead.Delegation{}},
		{"GET", "/v1/delegations", "Delegations the caller is party to", true, s.listDelegations, nil, 200, list[bulkhead.Delegation]{}},
		{"DELETE", "/v1/delegations/{id}", "Revoke a delegation", true, s.revokeDelegation, nil, 204, nil},

		{"POST", "/v1/worlds", "Create a world owned by the caller", true, s.createWorld, nameInput{}, 201, bulkhead.World{}},
		{"GET", "/v1/worlds/{id}", "One world", true, s.getWorld, nil, 200, bulkhead.World{}},

		{"POST", "/v1/rooms", "Create a room in a world you own", true, s.createRoom, roomInput{}, 201, bulkhead.Room{}},
		{"GET", "/v1/rooms", "Rooms the caller participates in", true, s.listRooms, nil, 200, list[bulkhead.Room]{}},
		{"GET", "/v1/rooms/{id}", "One room", true, s.getRoom, nil, 200, bulkhead.Room{}},
		{"GET", "/v1/rooms/{id}/participants", "A room's participants", true, s.listParticipants, nil, 200, list[bulkhead.Participant]{}},
		{"POST", "/v1/rooms/{id}/participants", "Add a participant (room owners and admins)", true, s.addParticipant, participantInput{}, 204, nil},
		{"POST", "/v1/rooms/{id}/join", "Join an open room", true, s.joinRoom, nil, 204, nil},
		{"DELETE", "/v1/rooms/{id}/participants/{entity_id}", "Remove a participant (admins) or leave", true, s.removeParticipant, nil, 204, nil},
		{"GET", "/v1/rooms/{id}/messages", "Room history, newest first", true, s.listMessages, nil, 200, list[bulkhead.Memory]{}},
		{"POST", "/v1/rooms/{id}/messages", "Post a message", true, s.postMessage, messageInput{}, 201, bulkhead.Memory{}},

		{"POST", "/v1/message-servers", "Register an external platform", true, s.createMessageServer, messageServerInput{}, 201, bulkhead.MessageServer{}},
		{"GET", "/v1/message-servers/{id}/agents", "Agents connected to a platform", true, s.serverAgents, nil, 200, list[uuid.UUID]{}},
		{"POST", "/v1/message-servers/{id}/agents", "Connect an agent", true, s.linkAgent, agentRef{}, 204, nil},
		{"DELETE", "/v1/message-servers/{id}/agents/{agent_id}", "Disconnect an agent", true, s.unlinkAgent, nil, 204, nil},

		{"POST", "/v1/documents", "Store a document (confidential ones are sealed)", true, s.createDocument, documentInput{}, 201, bulkhead.Document{}},
		{"GET", "/v1/documents", "Documents visible to the caller", true, s.listDocuments, nil, 200, list[bulkhead.Document]{}},
		{"GET", "/v1/documents/{id}", "One document", true, s.getDocument, nil, 200, bulkhead.Document{}},
		{"DELETE", "/v1/documents/{id}", "Delete a document you own", true, s.deleteDocument, nil, 204, nil},
	}
}
