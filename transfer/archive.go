package transfer

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// FormatVersion is the version of the payload inside an archive.
const FormatVersion = 1

// Manifest is an archive's first record: what it holds and where from.
type Manifest struct {
	Format        int                      `json:"format"`
	Tenant        uuid.UUID                `json:"tenant"`
	SchemaVersion int64                    `json:"schema_version"` // the source's newest migration
	ExportedAt    time.Time                `json:"exported_at"`
	SourceKEK     string                   `json:"source_kek,omitempty"` // id only, never key material
	Recipient     string                   `json:"recipient"`            // fingerprint of the target's key
	Tables        []postgres.TransferTable `json:"tables"`
	Vectors       retrieval.VectorInfo     `json:"vectors"`
	Encrypted     bool                     `json:"encrypted"` // the source sealed columns (keys follow)
}

// The payload is a sequence of JSON records, in this order: manifest,
// keys (if Encrypted), rows (per table, in Tables order), rows_end (the
// tables' digests), points, end (the points' count and checksum). Nothing
// may follow end.
const (
	kindManifest = "manifest"
	kindKeys     = "keys"
	kindRows     = "rows"
	kindRowsEnd  = "rows_end"
	kindPoints   = "points"
	kindEnd      = "end"
)

type record struct {
	Kind       string                          `json:"k"`
	Manifest   *Manifest                       `json:"manifest,omitempty"`
	Keys       []byte                          `json:"keys,omitempty"` // fieldcrypt.TenantKeys, binary
	Table      string                          `json:"table,omitempty"`
	Rows       []json.RawMessage               `json:"rows,omitempty"`
	Digests    map[string]postgres.TableDigest `json:"digests,omitempty"`
	Points     []point                         `json:"points,omitempty"`
	PointCount int                             `json:"point_count,omitempty"`
	PointSum   []byte                          `json:"point_sum,omitempty"`
}

type point struct {
	ID      uuid.UUID         `json:"id"`
	Vector  []float32         `json:"v"`
	Payload map[string]string `json:"p,omitempty"`
}

func toPoints(ps []point) []vector.Point {
	out := make([]vector.Point, len(ps))
	for i, p := range ps {
		out[i] = vector.Point{ID: p.ID, Vector: p.Vector, Payload: p.Payload}
	}
	return out
}

// reader decodes an opened archive's records and checks their order.
type reader struct {
	dec  *json.Decoder
	src  io.Reader
	last string
}

var order = map[string][]string{
	"":           {kindManifest},
	kindManifest: {kindKeys, kindRows, kindRowsEnd},
	kindKeys:     {kindRows, kindRowsEnd},
	kindRows:     {kindRows, kindRowsEnd},
	kindRowsEnd:  {kindPoints, kindEnd},
	kindPoints:   {kindPoints, kindEnd},
}

// errMalformed: the archive opened (it is authentic) but its records are
// not what an export writes.
var errMalformed = errors.New("malformed archive")

func newReader(r io.Reader) *reader {
	return &reader{dec: json.NewDecoder(r), src: r}
}

// next returns the next record, checking that it may follow the last.
func (r *reader) next() (record, error) {
	var rec record
	if err := r.dec.Decode(&rec); err != nil {
		if errors.Is(err, fieldcrypt.ErrArchive) {
			return rec, err
		}
		if errors.Is(err, io.EOF) {
			return rec, fmt.Errorf("%w: it ends after %q without its end record", errMalformed, r.last)
		}
		return rec, fmt.Errorf("%w: %v", errMalformed, err)
	}
	ok := false
	for _, k := range order[r.last] {
		ok = ok || k == rec.Kind
	}
	if !ok {
		return rec, fmt.Errorf("%w: record %q after %q", errMalformed, rec.Kind, r.last)
	}
	r.last = rec.Kind
	return rec, nil
}

// finish reads to the end of the archive, which authenticates its last
// segment (a truncated archive fails here), and refuses trailing data.
func (r *reader) finish() error {
	if r.last != kindEnd {
		return fmt.Errorf("%w: no end record", errMalformed)
	}
	rest, err := io.ReadAll(io.MultiReader(r.dec.Buffered(), r.src))
	if err != nil {
		return err
	}
	for _, b := range rest {
		if b != '\n' && b != ' ' {
			return fmt.Errorf("%w: data after the end record", errMalformed)
		}
	}
	return nil
}
