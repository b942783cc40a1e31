package postgres_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
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
