package vector

import "crypto/sha256"

// Checksum is the SHA-256 that Move verifies copies with, over points
// added in ascending id order (Scroll's order): id, dimension, the IEEE
// 754 bits of each float, then the payload sorted by key, every field
// length-prefixed. Tenant export and import use it to check that a
// collection arrived whole. It is not safe for concurrent use.
type Checksum struct{ c *checksum }

// NewChecksum returns an empty Checksum.
func NewChecksum() *Checksum { return &Checksum{c: newChecksum()} }

// Add adds p.
func (c *Checksum) Add(p Point) { c.c.add(p) }

// Sum returns the checksum of the points added so far.
func (c *Checksum) Sum() [sha256.Size]byte { return c.c.sum() }
