package postgres

import (
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
)

// BenchmarkUUIDEncode encodes what a read-back sends (40 chunk ids and a
// tenant) with pgx's default type map (uuid.UUID through driver.Valuer,
// the baseline) and with the map registerTypes sets up (uuidTypes). Ratios in
// docs/DECISIONS.md: go test ./postgres -run XX -bench UUIDEncode -benchmem
func BenchmarkUUIDEncode(b *testing.B) {
	ids := make([]uuid.UUID, 40)
	for i := range ids {
		ids[i] = uuid.New()
	}
	for _, bc := range []struct {
		name     string
		register bool
	}{{"valuer", false}, {"registered", true}} {
		b.Run(bc.name, func(b *testing.B) {
			m := pgtype.NewMap()
			if bc.register {
				uuidTypes(m)
			}
			buf := make([]byte, 0, 4096)
			b.ReportAllocs()
			for b.Loop() {
				var err error
				if buf, err = m.Encode(pgtype.UUIDArrayOID, pgtype.BinaryFormatCode, ids, buf[:0]); err != nil {
					b.Fatal(err)
				}
				if buf, err = m.Encode(pgtype.UUIDOID, pgtype.BinaryFormatCode, ids[0], buf[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkUUIDScan scans what a read-back returns per row (a tenant, a
// chunk and a document id) with pgx's default type map (uuid.UUID through
// sql.Scanner, a string each) and with uuidTypes' map:
// go test ./postgres -run XX -bench UUIDScan -benchmem
func BenchmarkUUIDScan(b *testing.B) {
	src := uuid.New()
	for _, bc := range []struct {
		name     string
		register bool
	}{{"scanner", false}, {"registered", true}} {
		b.Run(bc.name, func(b *testing.B) {
			m := pgtype.NewMap()
			if bc.register {
				uuidTypes(m)
			}
			var dst uuid.UUID
			plan := m.PlanScan(pgtype.UUIDOID, pgtype.BinaryFormatCode, &dst)
			b.ReportAllocs()
			for b.Loop() {
				for range 3 {
					if err := plan.Scan(src[:], &dst); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
