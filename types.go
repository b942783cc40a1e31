package bulkhead

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
)

// Tenant is an organisation: the unit of isolation.
type Tenant struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	Region    string    `json:"region"`
	CreatedAt time.Time `json:"created_at"`
}

// EntityKind says what an entity is.
type EntityKind string

// The entity kinds.
const (
	KindUser     EntityKind = "user"
	KindAgent    EntityKind = "agent"
	KindExternal EntityKind = "external"
)

// Entity is a principal inside a tenant: a user, an agent or an external party.
type Entity struct {
	ID        uuid.UUID  `json:"id"`
	Kind      EntityKind `json:"kind"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"created_at"`
}

// Agent is an AI agent (a character) owned by an entity. SystemPrompt and
// Secrets are sealed at rest with the tenant's key; they are filled in only
// for the agent's owner and the agent itself, and are never part of the
// agent's JSON form (secrets are write-only).
type Agent struct {
	ID           uuid.UUID         `json:"id"`
	OwnerID      uuid.UUID         `json:"owner_id"`
	Name         string            `json:"name"`
	Bio          string            `json:"bio"`
	Settings     json.RawMessage   `json:"settings"`
	SystemPrompt Secret            `json:"-"`
	Secrets      map[string]Secret `json:"-"`
	CreatedAt    time.Time         `json:"created_at"`
	UpdatedAt    time.Time         `json:"updated_at"`
}

// Delegation lets an agent act for a principal until it expires or is revoked.
type Delegation struct {
	ID          uuid.UUID  `json:"id"`
	AgentID     uuid.UUID  `json:"agent_id"`
	PrincipalID uuid.UUID  `json:"principal_id"`
	Scopes      []string   `json:"scopes"`
	ExpiresAt   *time.Time `json:"expires_at,omitempty"`
	RevokedAt   *time.Time `json:"revoked_at,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
}

// World is a shared environment holding rooms.
type World struct {
	ID        uuid.UUID `json:"id"`
	OwnerID   uuid.UUID `json:"owner_id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// Room is a conversation in a world. MessageServerID names the external
// platform (a Discord guild, a Telegram chat), never the tenant.
type Room struct {
	ID              uuid.UUID  `json:"id"`
	WorldID         uuid.UUID  `json:"world_id"`
	Name            string     `json:"name"`
	MessageServerID *uuid.UUID `json:"message_server_id,omitempty"`
	ChannelID       string     `json:"channel_id,omitempty"`
	Open            bool       `json:"open"`
	CreatedAt       time.Time  `json:"created_at"`
}

// Role is a participant's role in a room.
type Role string

// The participant roles.
const (
	RoleOwner  Role = "owner"
	RoleAdmin  Role = "admin"
	RoleMember Role = "member"
)

// Participant is an entity's membership of a room.
type Participant struct {
	RoomID   uuid.UUID `json:"room_id"`
	EntityID uuid.UUID `json:"entity_id"`
	Role     Role      `json:"role"`
	JoinedAt time.Time `json:"joined_at"`
}

// MessageServer is an external platform connected to the tenant.
type MessageServer struct {
	ID         uuid.UUID `json:"id"`
	OwnerID    uuid.UUID `json:"owner_id"`
	Platform   string    `json:"platform"`
	ExternalID string    `json:"external_id"`
	Name       string    `json:"name"`
	CreatedAt  time.Time `json:"created_at"`
}

// Memory is a message or a fact in a room.
type Memory struct {
	ID        uuid.UUID `json:"id"`
	RoomID    uuid.UUID `json:"room_id"`
	AuthorID  uuid.UUID `json:"author_id"`
	Kind      string    `json:"kind"`
	Content   string    `json:"content"`
	CreatedAt time.Time `json:"created_at"`
}

// Visibility says who sees a document.
type Visibility string

// The document visibilities.
const (
	VisibilityPrivate Visibility = "private" // the owner (and an agent acting for it)
	VisibilityRoom    Visibility = "room"    // participants of its room
	VisibilityTenant  Visibility = "tenant"  // everyone in the tenant
)

// Document is a piece of knowledge; its chunks inherit its visibility.
type Document struct {
	ID           uuid.UUID  `json:"id"`
	OwnerID      uuid.UUID  `json:"owner_id"`
	RoomID       *uuid.UUID `json:"room_id,omitempty"`
	Visibility   Visibility `json:"visibility"`
	Title        string     `json:"title"`
	Content      string     `json:"content,omitempty"`
	Confidential bool       `json:"confidential"`
	Chunks       int        `json:"chunks,omitempty"` // chunks stored, reported on creation
	CreatedAt    time.Time  `json:"created_at"`
}

// Chunk is a passage of a document.
type Chunk struct {
	ID         uuid.UUID `json:"id"`
	DocumentID uuid.UUID `json:"document_id"`
	Ord        int       `json:"ord"`
	Content    string    `json:"content"`
	// Confidential is whether the chunk's document is confidential (its
	// text is stored only sealed). The reads that open chunks set it; it
	// is not part of the API's JSON.
	Confidential bool `json:"-"`
}

// Passage is a chunk together with the title of its document: what
// retrieval reads back, under the caller's scope, for every hit.
type Passage struct {
	Chunk
	Title string `json:"title"`
}
