package postgres

import (
	"context"
	"fmt"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

func validName(field, s string) error {
	if n := len(strings.TrimSpace(s)); n == 0 || len(s) > 200 {
		return bulkhead.Invalid(field, "1 to 200 characters")
	}
	return nil
}

// CreateWorld creates a world owned by the calling entity.
func (db *DB) CreateWorld(ctx context.Context, name string) (bulkhead.World, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.World{}, err
	}
	if err := validName("name", name); err != nil {
		return bulkhead.World{}, err
	}
	w := bulkhead.World{ID: uuid.New(), OwnerID: s.Entity, Name: name}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO bulkhead.worlds (tenant_id, id, owner_id, name) VALUES ($1, $2, $3, $4) RETURNING created_at`,
			s.Tenant, w.ID, w.OwnerID, w.Name).Scan(&w.CreatedAt)
	})
	if err != nil {
		return bulkhead.World{}, fmt.Errorf("create world: %w", err)
	}
	return w, nil
}

// World returns a world the caller owns or has a room in. It returns ErrNotFound.
func (db *DB) World(ctx context.Context, id uuid.UUID) (bulkhead.World, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.World{}, err
	}
	var w bulkhead.World
	err = db.ReadRow(ctx, `SELECT id, owner_id, name, created_at FROM bulkhead.worlds WHERE tenant_id = $1 AND id = $2`,
		[]any{s.Tenant, id}, &w.ID, &w.OwnerID, &w.Name, &w.CreatedAt)
	return w, err
}

// NewRoom is the input of CreateRoom.
type NewRoom struct {
	WorldID         uuid.UUID
	Name            string
	Open            bool
	MessageServerID *uuid.UUID
	ChannelID       string
}

// CreateRoom creates a room in a world the calling entity owns and makes
// the caller its owner participant, in one transaction.
// It returns ErrForbidden when the world is not the caller's (or hidden).
func (db *DB) CreateRoom(ctx context.Context, in NewRoom) (bulkhead.Room, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.Room{}, err
	}
	if err := validName("name", in.Name); err != nil {
		return bulkhead.Room{}, err
	}
	if len(in.ChannelID) > 256 {
		return bulkhead.Room{}, bulkhead.Invalid("channel_id", "at most 256 characters")
	}
	r := bulkhead.Room{ID: uuid.New(), WorldID: in.WorldID, Name: in.Name, Open: in.Open, MessageServerID: in.MessageServerID, ChannelID: in.ChannelID}
	var channel *string
	if in.ChannelID != "" {
		channel = &in.ChannelID
	}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		b.Queue(`INSERT INTO bulkhead.rooms (tenant_id, id, world_id, name, is_open, message_server_id, channel_id)
			VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING created_at`, s.Tenant, r.ID, r.WorldID, r.Name, r.Open, r.MessageServerID, channel).
			QueryRow(func(row pgx.Row) error { return row.Scan(&r.CreatedAt) })
		b.Queue(`INSERT INTO bulkhead.participants (tenant_id, room_id, entity_id, role) VALUES ($1, $2, $3, 'owner')`, s.Tenant, r.ID, s.Entity)
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return bulkhead.Room{}, fmt.Errorf("create room: %w", err)
	}
	return r, nil
}

const roomCols = `id, world_id, name, message_server_id, coalesce(channel_id, ''), is_open, created_at`

func scanRoom(r pgx.CollectableRow) (bulkhead.Room, error) {
	var x bulkhead.Room
	return x, r.Scan(&x.ID, &x.WorldID, &x.Name, &x.MessageServerID, &x.ChannelID, &x.Open, &x.CreatedAt)
}

// Room returns a room the caller participates in (or whose world it owns).
// It returns ErrNotFound otherwise.
func (db *DB) Room(ctx context.Context, id uuid.UUID) (bulkhead.Room, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.Room{}, err
	}
	var r bulkhead.Room
	err = db.Read(ctx, func(rows pgx.Rows) error {
		r, err = pgx.CollectExactlyOneRow(rows, scanRoom)
		return err
	}, `SELECT `+roomCols+` FROM bulkhead.rooms WHERE tenant_id = $1 AND id = $2`, s.Tenant, id)
	return r, err
}

// ListRooms pages through the rooms the caller can see, by id.
func (db *DB) ListRooms(ctx context.Context, p Page) ([]bulkhead.Room, string, error) {
	return listByID(ctx, db, p, `SELECT `+roomCols+` FROM bulkhead.rooms WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3`,
		scanRoom, func(r bulkhead.Room) uuid.UUID { return r.ID })
}

// AddParticipant adds entity to room with role. The database allows it only
// to the room's owners/admins and its world's owner.
// It returns ErrForbidden when refused, ErrNotFound when the room or entity
// is missing, ErrConflict when already a participant.
func (db *DB) AddParticipant(ctx context.Context, room, entity uuid.UUID, role bulkhead.Role) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	switch role {
	case bulkhead.RoleOwner, bulkhead.RoleAdmin, bulkhead.RoleMember:
	default:
		return bulkhead.Invalid("role", "owner, admin or member")
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO bulkhead.participants (tenant_id, room_id, entity_id, role) VALUES ($1, $2, $3, $4)`, s.Tenant, room, entity, role)
		return err
	})
}

// JoinRoom adds the calling entity to an open room as a member; the
// database refuses closed rooms (ErrForbidden).
func (db *DB) JoinRoom(ctx context.Context, room uuid.UUID) error {
	s, err := entityScope(ctx)
	if err != nil {
		return err
	}
	return db.AddParticipant(ctx, room, s.Entity, bulkhead.RoleMember)
}

// RemoveParticipant removes entity from room: a room owner/admin may remove
// anyone, an entity may remove itself. It returns ErrNotFound otherwise.
func (db *DB) RemoveParticipant(ctx context.Context, room, entity uuid.UUID) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `DELETE FROM bulkhead.participants WHERE tenant_id = $1 AND room_id = $2 AND entity_id = $3`, s.Tenant, room, entity))
	})
}

// IsRoomParticipant reports whether entity participates in room, as far as
// the caller may know (rooms it can't see answer false). One indexed
// EXISTS, one round trip; it never loads the participant list.
func (db *DB) IsRoomParticipant(ctx context.Context, room, entity uuid.UUID) (bool, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return false, err
	}
	var ok bool
	err = db.ReadRow(ctx, `SELECT EXISTS (SELECT 1 FROM bulkhead.participants WHERE tenant_id = $1 AND room_id = $2 AND entity_id = $3)`,
		[]any{s.Tenant, room, entity}, &ok)
	return ok, err
}

// IsChannelParticipant is IsRoomParticipant for a room named by its
// external platform and channel (the message server and channel ids).
func (db *DB) IsChannelParticipant(ctx context.Context, messageServer uuid.UUID, channel string, entity uuid.UUID) (bool, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return false, err
	}
	var ok bool
	err = db.ReadRow(ctx, `SELECT EXISTS (
		SELECT 1 FROM bulkhead.rooms r JOIN bulkhead.participants p ON p.tenant_id = r.tenant_id AND p.room_id = r.id
		WHERE r.tenant_id = $1 AND r.message_server_id = $2 AND r.channel_id = $3 AND p.entity_id = $4)`,
		[]any{s.Tenant, messageServer, channel, entity}, &ok)
	return ok, err
}

// ListParticipants pages through a room's participants by entity id.
func (db *DB) ListParticipants(ctx context.Context, room uuid.UUID, p Page) ([]bulkhead.Participant, string, error) {
	return listByID(ctx, db, p, `SELECT room_id, entity_id, role, joined_at FROM bulkhead.participants
		WHERE tenant_id = $1 AND room_id = $4 AND entity_id > $2 ORDER BY entity_id LIMIT $3`,
		func(r pgx.CollectableRow) (bulkhead.Participant, error) {
			var x bulkhead.Participant
			return x, r.Scan(&x.RoomID, &x.EntityID, &x.Role, &x.JoinedAt)
		}, func(x bulkhead.Participant) uuid.UUID { return x.EntityID }, room)
}

// CreateMessageServer registers an external platform owned by the caller.
// It returns ErrConflict when the tenant already has it.
func (db *DB) CreateMessageServer(ctx context.Context, platform, externalID, name string) (bulkhead.MessageServer, error) {
	s, err := entityScope(ctx)
	if err != nil {
		return bulkhead.MessageServer{}, err
	}
	if platform == "" || len(platform) > 64 {
		return bulkhead.MessageServer{}, bulkhead.Invalid("platform", "1 to 64 characters")
	}
	if externalID == "" || len(externalID) > 256 {
		return bulkhead.MessageServer{}, bulkhead.Invalid("external_id", "1 to 256 characters")
	}
	m := bulkhead.MessageServer{ID: uuid.New(), OwnerID: s.Entity, Platform: platform, ExternalID: externalID, Name: name}
	err = db.InScope(ctx, func(tx pgx.Tx) error {
		return tx.QueryRow(ctx, `INSERT INTO bulkhead.message_servers (tenant_id, id, owner_id, platform, external_id, name)
			VALUES ($1, $2, $3, $4, $5, $6) RETURNING created_at`, s.Tenant, m.ID, m.OwnerID, m.Platform, m.ExternalID, m.Name).Scan(&m.CreatedAt)
	})
	if err != nil {
		return bulkhead.MessageServer{}, fmt.Errorf("create message server: %w", err)
	}
	return m, nil
}

// LinkAgent connects an agent to a message server the caller owns.
// It returns ErrForbidden when the server is not the caller's.
func (db *DB) LinkAgent(ctx context.Context, server, agent uuid.UUID) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO bulkhead.message_server_agents (tenant_id, message_server_id, agent_id) VALUES ($1, $2, $3)`, s.Tenant, server, agent)
		return err
	})
}

// UnlinkAgent disconnects an agent from a message server the caller owns.
// It returns ErrNotFound.
func (db *DB) UnlinkAgent(ctx context.Context, server, agent uuid.UUID) error {
	s, err := scopeFrom(ctx)
	if err != nil {
		return err
	}
	return db.InScope(ctx, func(tx pgx.Tx) error {
		return mustAffect(tx.Exec(ctx, `DELETE FROM bulkhead.message_server_agents WHERE tenant_id = $1 AND message_server_id = $2 AND agent_id = $3`, s.Tenant, server, agent))
	})
}

// ServerAgents lists the agents connected to a message server.
func (db *DB) ServerAgents(ctx context.Context, server uuid.UUID) ([]uuid.UUID, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, err
	}
	var out []uuid.UUID
	err = db.Read(ctx, func(rows pgx.Rows) error {
		out, err = pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
		return err
	}, `SELECT agent_id FROM bulkhead.message_server_agents WHERE tenant_id = $1 AND message_server_id = $2 ORDER BY agent_id`, s.Tenant, server)
	return out, err
}
