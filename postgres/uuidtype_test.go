package postgres

import (
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// TestUUIDScan: an id scans into *uuid.UUID from binary and from text
// (the simple protocol's), NULL leaves the target as it was (as
// uuid.UUID's sql.Scanner does), and a binary scan allocates nothing: it
// does not go through a string.
func TestUUIDScan(t *testing.T) {
	m := pgtype.NewMap()
	uuidTypes(m)
	want := uuid.New()
	for _, tc := range []struct {
		name   string
		format int16
		src    []byte
	}{
		{"binary", pgtype.BinaryFormatCode, want[:]},
		{"text", pgtype.TextFormatCode, []byte(want.String())},
	} {
		var got uuid.UUID
		if err := m.Scan(pgtype.UUIDOID, tc.format, tc.src, &got); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if got != want {
			t.Errorf("%s: scanned %s, want %s", tc.name, got, want)
		}
		if err := m.Scan(pgtype.UUIDOID, tc.format, nil, &got); err != nil || got != want {
			t.Errorf("%s: NULL scanned into a set id: %s, %v; want it left as %s", tc.name, got, err, want)
		}
	}
	var got uuid.UUID
	plan := m.PlanScan(pgtype.UUIDOID, pgtype.BinaryFormatCode, &got)
	if allocs := testing.AllocsPerRun(100, func() {
		if err := plan.Scan(want[:], &got); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Errorf("a binary id scan allocates %v times: it is not scanned as 16 bytes", allocs)
	}
	var ids []uuid.UUID
	arr, err := m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, []uuid.UUID{want, uuid.Nil}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Scan(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, arr, &ids); err != nil || len(ids) != 2 || ids[0] != want || ids[1] != uuid.Nil {
		t.Errorf("uuid[] round trip: %v, %v", ids, err)
	}
}
