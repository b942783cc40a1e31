package vector

import (
	"fmt"
	"math"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// Limits every backend enforces on input, so that request input cannot make
// a backend allocate without bound.
const (
	MaxDimension   = 16384   // floats per vector
	MaxK           = 10000   // hits per Search
	MaxScrollLimit = 10000   // points per Scroll page
	MaxPayload     = 1 << 20 // bytes of payload keys and values per point
)

// Point is a vector with its id and payload, inside one tenant's collection.
// Vector is stored as given; similarity is cosine (the dot product of the
// normalised vectors), so its length does not matter but must not be zero.
type Point struct {
	ID      uuid.UUID
	Vector  []float32
	Payload map[string]string
}

// Hit is one Search result. Tenant is the tenant whose collection the
// backend read it from; the Router checks it against the caller before
// returning the hit, and callers can check it again before use.
type Hit struct {
	ID      uuid.UUID
	Score   float32 // cosine similarity in [-1, 1]
	Payload map[string]string
	Tenant  uuid.UUID
}

// Stats describes one collection.
type Stats struct {
	Dimension int
	Points    int
	Bytes     int64 // approximate size of the points (vectors, ids, payloads)
}

// Validate reports whether p can be stored in a collection of dimension dim.
// It returns ErrDimension for a wrong length and a bulkhead.ErrInvalid error
// for a nil id, a zero, NaN, infinite or absurdly scaled vector (norm outside
// [1e-12, 1e12]), an oversized payload, or terms ParseTerms refuses.
func (p Point) Validate(dim int) error {
	_, _, err := p.ValidateTerms(dim)
	return err
}

// ValidateTerms is Validate that also returns p's terms as ParseTerms
// parses them, and whether p has any (false: no PayloadTerms): a store
// that indexes them parses each point once.
func (p Point) ValidateTerms(dim int) (Terms, bool, error) {
	if p.ID == uuid.Nil {
		return Terms{}, false, bulkhead.Invalid("id", "required")
	}
	if len(p.Vector) != dim {
		return Terms{}, false, fmt.Errorf("point %s has %d dimensions, collection has %d: %w", p.ID, len(p.Vector), dim, ErrDimension)
	}
	if err := checkVector("vector", p.Vector); err != nil {
		return Terms{}, false, err
	}
	n := 0
	for k, v := range p.Payload {
		n += len(k) + len(v)
	}
	if n > MaxPayload {
		return Terms{}, false, bulkhead.Invalid("payload", fmt.Sprintf("%d bytes, more than %d", n, MaxPayload))
	}
	s, ok := p.Payload[PayloadTerms]
	if !ok {
		return Terms{}, false, nil
	}
	t, err := ParseTerms(s)
	if err != nil {
		return Terms{}, false, err
	}
	return t, true, nil
}

// CheckQuery reports whether a Search for the top k of query can run on a
// collection of dimension dim. It returns ErrDimension or a
// bulkhead.ErrInvalid error.
func CheckQuery(query []float32, dim, k int) error {
	if k < 1 || k > MaxK {
		return bulkhead.Invalid("k", fmt.Sprintf("must be in [1, %d]", MaxK))
	}
	if len(query) != dim {
		return fmt.Errorf("query has %d dimensions, collection has %d: %w", len(query), dim, ErrDimension)
	}
	return checkVector("query", query)
}

// CheckDimension reports whether dim is a usable collection dimension.
func CheckDimension(dim int) error {
	if dim < 1 || dim > MaxDimension {
		return bulkhead.Invalid("dimension", fmt.Sprintf("must be in [1, %d]", MaxDimension))
	}
	return nil
}

// CheckScrollLimit reports whether limit is a usable Scroll page size.
func CheckScrollLimit(limit int) error {
	if limit < 1 || limit > MaxScrollLimit {
		return bulkhead.Invalid("limit", fmt.Sprintf("must be in [1, %d]", MaxScrollLimit))
	}
	return nil
}

const minNorm, maxNorm = 1e-12, 1e12

func checkVector(field string, v []float32) error {
	var sum float64
	for _, x := range v {
		f := float64(x)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return bulkhead.Invalid(field, "contains NaN or Inf")
		}
		sum += f * f
	}
	if sum == 0 {
		return bulkhead.Invalid(field, "zero vector has no direction")
	}
	// Bound the norm so that normalising and the float32 dot products
	// never overflow or lose the vector to denormals.
	if norm := math.Sqrt(sum); norm < minNorm || norm > maxNorm {
		return bulkhead.Invalid(field, fmt.Sprintf("norm %g outside [%g, %g]", norm, minNorm, maxNorm))
	}
	return nil
}
