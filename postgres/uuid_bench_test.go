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
