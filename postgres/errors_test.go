package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// TestDataExceptionsAreInvalidInput sends values PostgreSQL refuses with a
// class 22 SQLSTATE (22021: NUL in text, 22P05: \u0000 in jsonb, 22P02:
// malformed jsonb) straight to the repositories, bypassing the HTTP
// decoder's own check: each must come back as bulkhead.ErrInvalid (a 400),
// never as an untranslated driver error (a 500).
func TestDataExceptionsAreInvalidInput(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	tn := demo.T1
	ctx := as(t, tn.Tenant.ID, tn.Bob, uuid.Nil)
	cases := []struct {
		name string
		f    func() error
	}{
		{"NUL in a message (22021)", func() error {
			_, err := d.DB.AppendMemory(ctx, postgres.NewMemory{RoomID: tn.Room1, Content: "a\x00b"})
			return err
		}},
		{"invalid UTF-8 in a message (22021)", func() error {
			_, err := d.DB.AppendMemory(ctx, postgres.NewMemory{RoomID: tn.Room1, Content: "a\xffb"})
			return err
		}},
		{"\\u0000 in agent settings (22P05)", func() error {
			_, err := d.DB.CreateAgent(ctx, postgres.NewAgent{Name: "a", Settings: json.RawMessage(`{"k":"\u0000"}`)})
			return err
		}},
		{"lone surrogate in agent settings (22P02)", func() error {
			_, err := d.DB.CreateAgent(ctx, postgres.NewAgent{Name: "b", Settings: json.RawMessage(`{"k":"\ud800"}`)})
			return err
		}},
		{"NUL in a world name (22021)", func() error {
			_, err := d.DB.CreateWorld(ctx, "w\x00")
			return err
		}},
	}
	for _, c := range cases {
		if err := c.f(); !errors.Is(err, bulkhead.ErrInvalid) {
			t.Errorf("%s: %v, want bulkhead.ErrInvalid", c.name, err)
		}
	}
}

// TestUnreachableIsUnavailable: a database that can't be reached (dialing
// is refused, as while PgBouncer or PostgreSQL restarts) is
// bulkhead.ErrUnavailable (503) from Read and InScope, never an
// untranslated driver error (500).
func TestUnreachableIsUnavailable(t *testing.T) {
	t.Parallel()
	d, demo := seeded(t)
	var refuse atomic.Bool
	dialer := &net.Dialer{}
	db, err := postgres.Open(context.Background(), postgres.Config{AppDSN: d.AppDSN(), ContextKey: testdb.ContextKey(), MaxConns: 1,
		Dial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if refuse.Load() {
				return nil, &net.OpError{Op: "dial", Net: network, Err: syscall.ECONNREFUSED}
			}
			return dialer.DialContext(ctx, network, addr)
		}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	refuse.Store(true)
	db.Pool().Reset() // drop the open connection: the next use dials
	ctx := as(t, demo.T1.Tenant.ID, demo.T1.Bob, uuid.Nil)
	if err := db.InScope(ctx, func(pgx.Tx) error { return nil }); !errors.Is(err, bulkhead.ErrUnavailable) {
		t.Errorf("InScope: %v, want bulkhead.ErrUnavailable", err)
	}
	if _, err := db.Room(ctx, demo.T1.Room1); !errors.Is(err, bulkhead.ErrUnavailable) {
		t.Errorf("Read: %v, want bulkhead.ErrUnavailable", err)
	}
}
