package postgres

import (
	"context"
	"fmt"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// VisibleChunks returns which of ids are chunks the caller can see, read in
// the caller's scope: row-level security decides (private, room, tenant
// visibility). Nothing but ids is read (no text, nothing opened), so it is
// cheap enough to filter a long list of vector hits before they are
// ranked: ranks and scores must be computed over what the caller can see
// only, or they reveal what it can't (issue 11, finding 4). At most
// MaxTextHits ids per call.
//
// It returns bulkhead.ErrUnauthenticated without a scope and
// bulkhead.ErrInvalid for too many ids.
func (db *DB) VisibleChunks(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]bool, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return nil, err
	}
	if len(ids) > MaxTextHits {
		return nil, bulkhead.Invalid("ids", fmt.Sprintf("at most %d", MaxTextHits))
	}
	out := make(map[uuid.UUID]bool, len(ids))
	if len(ids) == 0 {
		return out, nil
	}
	err = db.Read(ctx, func(rows pgx.Rows) error {
		for rows.Next() {
			var tenant, id uuid.UUID
			if err := rows.Scan(&tenant, &id); err != nil {
				return err
			}
			if tenant != s.Tenant {
				return errForeignRow
			}
			out[id] = true
		}
		return rows.Err()
	}, `SELECT c.tenant_id, c.id FROM bulkhead.chunks c WHERE c.tenant_id = $1 AND c.id = ANY($2::uuid[])`, s.Tenant, ids)
	if err != nil {
		return nil, fmt.Errorf("visible chunks: %w", err)
	}
	return out, nil
}
