package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
)

// The resource handlers. Each runs with the scope the authenticator put in
// the request's context (never one named in the body or query), calls one
// repository method, and returns errors to the one error path. Row-level
// security decides what exists: a hidden row is a 404.

func (s *Server) me(w http.ResponseWriter, r *http.Request) error {
	sc, _ := bulkhead.ScopeFrom(r.Context())
	t, err := s.db.CurrentTenant(r.Context())
	if err != nil {
		return err
	}
	out := map[string]any{"tenant": t, "entity_id": sc.Entity}
	if sc.Entity != uuid.Nil {
		e, err := s.db.Entity(r.Context(), sc.Entity)
		if err != nil {
			return err
		}
		out["entity"] = e
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *Server) listEntities(w http.ResponseWriter, r *http.Request) error {
	return listPage(w, r, s.db.ListEntities)
}

func (s *Server) getEntity(w http.ResponseWriter, r *http.Request) error {
	return getByID(w, r, "id", s.db.Entity)
}

// Request bodies.
type (
	delegationInput struct {
		AgentID   uuid.UUID  `json:"agent_id" openapi:"required"`
		Scopes    []string   `json:"scopes"`
		ExpiresAt *time.Time `json:"expires_at"`
	}
	nameInput struct {
		Name string `json:"name" openapi:"required"`
	}
	roomInput struct {
		WorldID         uuid.UUID  `json:"world_id" openapi:"required"`
		Name            string     `json:"name" openapi:"required"`
		Open            bool       `json:"open"`
		MessageServerID *uuid.UUID `json:"message_server_id"`
		ChannelID       string     `json:"channel_id"`
	}
	participantInput struct {
		EntityID uuid.UUID     `json:"entity_id" openapi:"required"`
		Role     bulkhead.Role `json:"role"`
	}
	messageInput struct {
		Content string `json:"content" openapi:"required"`
		Kind    string `json:"kind"`
		// AsPrincipal writes as the principal the caller acts for (honoured
		// by the database only under a valid delegation).
		AsPrincipal bool `json:"as_principal"`
	}
	messageServerInput struct {
		Platform   string `json:"platform" openapi:"required"`
		ExternalID string `json:"external_id" openapi:"required"`
		Name       string `json:"name"`
	}
	agentRef struct {
		AgentID uuid.UUID `json:"agent_id" openapi:"required"`
	}
	documentInput struct {
		Title        string              `json:"title" openapi:"required"`
		Content      string              `json:"content" openapi:"required"`
		Visibility   bulkhead.Visibility `json:"visibility" openapi:"required"`
		RoomID       *uuid.UUID          `json:"room_id"`
		Confidential bool                `json:"confidential"`
	}
)

// agentInput is the body of POST and PUT /v1/agents: secrets are write-only.
type agentInput struct {
	Name         string                     `json:"name" openapi:"required"`
	Bio          string                     `json:"bio"`
	Settings     json.RawMessage            `json:"settings"`
	SystemPrompt string                     `json:"system_prompt"`
	Secrets      map[string]bulkhead.Secret `json:"secrets"`
}

func (in agentInput) repo() postgres.NewAgent {
	return postgres.NewAgent{Name: in.Name, Bio: in.Bio, Settings: in.Settings, SystemPrompt: bulkhead.Secret(in.SystemPrompt), Secrets: in.Secrets}
}

// agentView is what the API shows of an agent: metadata and which secrets
// are set, never their values.
type agentView struct {
	bulkhead.Agent
	SecretNames     []string `json:"secret_names,omitempty"`
	HasSystemPrompt bool     `json:"has_system_prompt"`
}

func viewAgent(a bulkhead.Agent) agentView {
	v := agentView{Agent: a, HasSystemPrompt: a.SystemPrompt != ""}
	for k := range a.Secrets {
		v.SecretNames = append(v.SecretNames, k)
	}
	return v
}

func (s *Server) createAgent(w http.ResponseWriter, r *http.Request) error {
	var in agentInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	a, err := s.db.CreateAgent(r.Context(), in.repo())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, viewAgent(a))
	return nil
}

func (s *Server) listAgents(w http.ResponseWriter, r *http.Request) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	items, next, err := s.db.ListAgents(r.Context(), p)
	if err != nil {
		return err
	}
	views := make([]agentView, len(items))
	for i, a := range items {
		views[i] = agentView{Agent: a}
	}
	writeJSON(w, http.StatusOK, newList(views, next))
	return nil
}

func (s *Server) getAgent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	a, err := s.db.Agent(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, viewAgent(a))
	return nil
}

func (s *Server) updateAgent(w http.ResponseWriter, r *http.Request) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in agentInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.db.UpdateAgent(r.Context(), id, in.repo()); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) deleteAgent(w http.ResponseWriter, r *http.Request) error {
	return deleteByID(w, r, s.db.DeleteAgent)
}

func (s *Server) createDelegation(w http.ResponseWriter, r *http.Request) error {
	var in delegationInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if in.AgentID == uuid.Nil {
		return bulkhead.Invalid("agent_id", "required")
	}
	d, err := s.db.GrantDelegation(r.Context(), in.AgentID, in.Scopes, in.ExpiresAt)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, d)
	return nil
}

func (s *Server) listDelegations(w http.ResponseWriter, r *http.Request) error {
	items, err := s.db.ListDelegations(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, ""))
	return nil
}

func (s *Server) revokeDelegation(w http.ResponseWriter, r *http.Request) error {
	return deleteByID(w, r, s.db.RevokeDelegation)
}

func (s *Server) createWorld(w http.ResponseWriter, r *http.Request) error {
	var in nameInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	world, err := s.db.CreateWorld(r.Context(), in.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, world)
	return nil
}

func (s *Server) getWorld(w http.ResponseWriter, r *http.Request) error {
	return getByID(w, r, "id", s.db.World)
}

func (s *Server) createRoom(w http.ResponseWriter, r *http.Request) error {
	var in roomInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	room, err := s.db.CreateRoom(r.Context(), postgres.NewRoom{WorldID: in.WorldID, Name: in.Name, Open: in.Open, MessageServerID: in.MessageServerID, ChannelID: in.ChannelID})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, room)
	return nil
}

func (s *Server) listRooms(w http.ResponseWriter, r *http.Request) error {
	return listPage(w, r, s.db.ListRooms)
}

func (s *Server) getRoom(w http.ResponseWriter, r *http.Request) error {
	return getByID(w, r, "id", s.db.Room)
}

func (s *Server) listParticipants(w http.ResponseWriter, r *http.Request) error {
	return roomPage(w, r, func(ctx context.Context, room uuid.UUID, p postgres.Page) ([]bulkhead.Participant, string, error) {
		if _, err := s.db.Room(ctx, room); err != nil { // a hidden room is a 404, not an empty list
			return nil, "", err
		}
		return s.db.ListParticipants(ctx, room, p)
	})
}

func (s *Server) addParticipant(w http.ResponseWriter, r *http.Request) error {
	room, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in participantInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if in.Role == "" {
		in.Role = bulkhead.RoleMember
	}
	if err := s.db.AddParticipant(r.Context(), room, in.EntityID, in.Role); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) joinRoom(w http.ResponseWriter, r *http.Request) error {
	return deleteByID(w, r, s.db.JoinRoom)
}

func (s *Server) removeParticipant(w http.ResponseWriter, r *http.Request) error {
	return onPair(w, r, "entity_id", s.db.RemoveParticipant)
}

func (s *Server) listMessages(w http.ResponseWriter, r *http.Request) error {
	return roomPage(w, r, s.db.RoomMessages) // a hidden room is a 404
}

// roomPage answers one cursor page of a list inside the {id} room.
func roomPage[T any](w http.ResponseWriter, r *http.Request, list func(context.Context, uuid.UUID, postgres.Page) ([]T, string, error)) error {
	room, err := pathID(r, "id")
	if err != nil {
		return err
	}
	p, err := page(r)
	if err != nil {
		return err
	}
	items, next, err := list(r.Context(), room, p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) error {
	room, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in messageInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	m := postgres.NewMemory{RoomID: room, Kind: in.Kind, Content: in.Content}
	if in.AsPrincipal {
		sc, _ := bulkhead.ScopeFrom(r.Context())
		if sc.ActingFor == uuid.Nil {
			return bulkhead.Invalid("as_principal", "the credential acts for no principal")
		}
		m.AuthorID = sc.ActingFor
	}
	mem, err := s.db.AppendMemory(r.Context(), m)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, mem)
	return nil
}

func (s *Server) createMessageServer(w http.ResponseWriter, r *http.Request) error {
	var in messageServerInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	m, err := s.db.CreateMessageServer(r.Context(), in.Platform, in.ExternalID, in.Name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, m)
	return nil
}

func (s *Server) linkAgent(w http.ResponseWriter, r *http.Request) error {
	server, err := pathID(r, "id")
	if err != nil {
		return err
	}
	var in agentRef
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if err := s.db.LinkAgent(r.Context(), server, in.AgentID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) unlinkAgent(w http.ResponseWriter, r *http.Request) error {
	return onPair(w, r, "agent_id", s.db.UnlinkAgent)
}

func (s *Server) serverAgents(w http.ResponseWriter, r *http.Request) error {
	server, err := pathID(r, "id")
	if err != nil {
		return err
	}
	items, err := s.db.ServerAgents(r.Context(), server)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, ""))
	return nil
}

func (s *Server) listDocuments(w http.ResponseWriter, r *http.Request) error {
	return listPage(w, r, s.db.ListDocuments)
}

func (s *Server) getDocument(w http.ResponseWriter, r *http.Request) error {
	return getByID(w, r, "id", s.db.Document)
}

// listPage answers one cursor page of a list.
func listPage[T any](w http.ResponseWriter, r *http.Request, list func(context.Context, postgres.Page) ([]T, string, error)) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	items, next, err := list(r.Context(), p)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, newList(items, next))
	return nil
}

func getByID[T any](w http.ResponseWriter, r *http.Request, name string, get func(ctx context.Context, id uuid.UUID) (T, error)) error {
	id, err := pathID(r, name)
	if err != nil {
		return err
	}
	v, err := get(r.Context(), id)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

// onPair runs f on the {id} and {second} path ids and answers 204.
func onPair(w http.ResponseWriter, r *http.Request, second string, f func(ctx context.Context, id, other uuid.UUID) error) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	other, err := pathID(r, second)
	if err != nil {
		return err
	}
	if err := f(r.Context(), id, other); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteByID runs f on the {id} path id and answers 204 (deletions, and
// actions without a body such as joining a room).
func deleteByID(w http.ResponseWriter, r *http.Request, del func(ctx context.Context, id uuid.UUID) error) error {
	id, err := pathID(r, "id")
	if err != nil {
		return err
	}
	if err := del(r.Context(), id); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
