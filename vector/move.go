package vector

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"math"
	"slices"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
)

// movePage is how many points Move copies per Scroll/Upsert round.
const movePage = 512

// Move moves generation gen of tenant's collection from the backend of
// region from to the backend of region to, with no point lost:
//
//  1. writes of the tenant (every generation) through this router are
//     refused with ErrUnavailable (retryable) until the move ends; reads
//     keep being served from the old copy;
//  2. any stale copy of the generation in to is dropped, it is created
//     there with the same dimension and every point is copied;
//  3. both copies are verified: same number of points and the same
//     SHA-256 over (id, vector, payload) of every point in id order;
//  4. flip is called to record the new region, and Move checks that
//     Regions now answers to;
//  5. reads that were routed to the old copy are drained, and it is
//     dropped.
//
// The region belongs to the tenant, not to a generation: after the flip
// every generation of the tenant is looked for in to. Move therefore moves
// a tenant that has one generation, the one named; finish or abandon a
// re-embedding (drop the other generation) first. Backends cannot list a
// tenant's generations, so Move cannot see them all: it refuses, with
// bulkhead.ErrConflict and before copying anything, when generation gen-1
// or gen+1 exists in from (where a re-embedding keeps its other
// generation), but a generation further away would be left behind in
// from, unreachable until moved by hand.
//
// Move is resumable: if the tenant already lives in to (a previous Move
// flipped, then failed to drop), it only drops the old copy of the
// generation. If it fails before the flip, the old copy stays
// authoritative; if flip itself fails, both copies are kept and Move can be
// run again.
//
// Writes are frozen through this Router only. With several server
// processes, each has its own Router: the tenant's writes must be stopped
// on all of them for the duration (for instance by a Regions
// implementation that answers ErrUnavailable for a tenant marked as
// moving), or a write another process makes to the old copy after it was
// copied would be lost with it. Other processes' Regions caches must also
// expire before the old copy is dropped.
//
// ctx must be marked with bulkhead.AsMaintenance: moving names a tenant
// explicitly, which is cross-tenant work. Move returns ErrForbidden without
// one, a bulkhead.ErrInvalid error for a nil tenant, a generation 0, the
// same region twice or a nil flip, ErrWrongRegion if the tenant lives in
// neither region or this router has no backend for one of them,
// bulkhead.ErrConflict if the tenant is already being moved or has a
// neighbouring generation in from, ErrNotFound if it has no collection at
// generation gen, and ErrUnavailable if the copies do not verify.
func (r *Router) Move(ctx context.Context, tenant uuid.UUID, gen uint32, from, to string, flip func(context.Context) error) error {
	if _, ok := bulkhead.MaintenanceFrom(ctx); !ok {
		return fmt.Errorf("move vectors of tenant %s: needs a maintenance context: %w", tenant, ErrForbidden)
	}
	if tenant == uuid.Nil || gen < 1 || from == to || flip == nil {
		return fmt.Errorf("move vectors of tenant %s generation %d from %q to %q: %w", tenant, gen, from, to, bulkhead.ErrInvalid)
	}
	src, ok1 := r.stores[from]
	dst, ok2 := r.stores[to]
	if !ok1 || !ok2 {
		return fmt.Errorf("move vectors of tenant %s: router serves %q: %t, %q: %t: %w", tenant, from, ok1, to, ok2, ErrWrongRegion)
	}
	c := Collection{tenant: tenant, region: from, gen: gen, router: r}
	d := Collection{tenant: tenant, region: to, gen: gen, router: r}
	fail := func(step string, err error) error {
		return fmt.Errorf("move vectors of tenant %s generation %d from %q to %q: %s: %w", tenant, gen, from, to, step, err)
	}

	if !r.startMove(tenant) {
		return fail("start", fmt.Errorf("already moving: %w", bulkhead.ErrConflict))
	}
	defer r.endMove(tenant)
	g := r.gate(tenant)
	g.Lock() // drain writes that started before the mark; new ones see it
	g.Unlock()

	cur, err := r.regions.Region(ctx, tenant)
	if err != nil {
		return fail("region", err)
	}
	switch cur {
	case to: // resume after a flip: the new copy is authoritative
		if _, err := dst.Stats(ctx, d); err != nil {
			return fail("tenant already in "+to+" but its collection there", err)
		}
		if err := src.DropCollection(ctx, c); err != nil && !errors.Is(err, ErrNotFound) {
			return fail("drop old copy", err)
		}
		return nil
	case from:
	default:
		return fail("tenant lives in "+cur, ErrWrongRegion)
	}

	st, err := src.Stats(ctx, c)
	if err != nil {
		return fail("source", err)
	}
	if err := checkNeighbours(ctx, src, c); err != nil {
		return fail("other generations", err)
	}
	if err := dst.DropCollection(ctx, d); err != nil && !errors.Is(err, ErrNotFound) {
		return fail("drop stale target", err)
	}
	if err := dst.CreateCollection(ctx, d, st.Dimension); err != nil {
		return fail("create target", err)
	}
	n, want, err := copyPoints(ctx, src, c, dst, d)
	if err != nil {
		return fail("copy", err)
	}
	if err := verifyCopy(ctx, dst, d, st.Points, n, want); err != nil {
		_ = dst.DropCollection(ctx, d) // best effort: the source stays authoritative
		return fail("verify", err)
	}

	err = flip(ctx)
	if err == nil {
		var now string
		if now, err = r.regions.Region(ctx, tenant); err == nil && now != to {
			err = fmt.Errorf("flip returned but the tenant's region is still %q", now)
		}
	}
	if err != nil {
		return fail("flip (both copies kept; run Move again)", err)
	}
	// Calls from now on resolve the new region; writes may resume. Drain
	// the reads that resolved the old one before dropping it.
	r.endMove(tenant)
	g.Lock()
	g.Unlock()
	if err := src.DropCollection(ctx, c); err != nil && !errors.Is(err, ErrNotFound) {
		return fail("moved, but dropping the old copy failed (run Move again to finish)", err)
	}
	return nil
}

// checkNeighbours returns bulkhead.ErrConflict if generation gen-1 or
// gen+1 of c's tenant exists in s: the flip would strand it in the old
// region. Anything but ErrNotFound from s is returned as is (unsure is not
// absent).
func checkNeighbours(ctx context.Context, s Store, c Collection) error {
	var gens []uint32
	if c.gen > 1 {
		gens = append(gens, c.gen-1)
	}
	if c.gen < math.MaxUint32 {
		gens = append(gens, c.gen+1)
	}
	for _, g := range gens {
		o := c
		o.gen = g
		_, err := s.Stats(ctx, o)
		switch {
		case err == nil:
			return fmt.Errorf("generation %d exists too and would be left behind (move one generation per tenant): %w", g, bulkhead.ErrConflict)
		case !errors.Is(err, ErrNotFound):
			return fmt.Errorf("generation %d: %w", g, err)
		}
	}
	return nil
}

func (r *Router) startMove(tenant uuid.UUID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.moving[tenant] {
		return false
	}
	r.moving[tenant] = true
	return true
}

func (r *Router) endMove(tenant uuid.UUID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.moving, tenant)
}

// copyPoints copies every point of c in src to d in dst and returns how
// many it copied and their checksum.
func copyPoints(ctx context.Context, src Store, c Collection, dst Store, d Collection) (int, [sha256.Size]byte, error) {
	h := newChecksum()
	n := 0
	err := scrollAll(ctx, src, c, func(page []Point) error {
		for _, p := range page {
			h.add(p)
		}
		n += len(page)
		return dst.Upsert(ctx, d, page)
	})
	return n, h.sum(), err
}

func verifyCopy(ctx context.Context, dst Store, d Collection, srcPoints, copied int, want [sha256.Size]byte) error {
	st, err := dst.Stats(ctx, d)
	if err != nil {
		return err
	}
	if st.Points != srcPoints || copied != srcPoints {
		return fmt.Errorf("source has %d points, copied %d, target has %d: %w", srcPoints, copied, st.Points, ErrUnavailable)
	}
	h := newChecksum()
	if err := scrollAll(ctx, dst, d, func(page []Point) error {
		for _, p := range page {
			h.add(p)
		}
		return nil
	}); err != nil {
		return err
	}
	if got := h.sum(); got != want {
		return fmt.Errorf("checksum of target %x differs from source %x: %w", got[:8], want[:8], ErrUnavailable)
	}
	return nil
}

// scrollAll calls fn with every page of c, checking that ids strictly
// increase (the order the checksum depends on).
func scrollAll(ctx context.Context, s Store, c Collection, fn func([]Point) error) error {
	after := uuid.Nil
	for {
		page, err := s.Scroll(ctx, c, after, movePage)
		if err != nil {
			return err
		}
		if len(page) == 0 {
			return nil
		}
		for _, p := range page {
			if bytes.Compare(p.ID[:], after[:]) <= 0 {
				return fmt.Errorf("scroll of %s out of order at %s: %w", c, p.ID, ErrUnavailable)
			}
			after = p.ID
		}
		if err := fn(page); err != nil {
			return err
		}
	}
}

// checksum is SHA-256 over a canonical encoding of points: id, dimension,
// the IEEE 754 bits of each float, then the payload sorted by key, every
// length-prefixed, little-endian.
type checksum struct {
	h   hash.Hash
	buf []byte
}

func newChecksum() *checksum { return &checksum{h: sha256.New()} }

func (c *checksum) add(p Point) {
	b := c.buf[:0]
	b = append(b, p.ID[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(p.Vector)))
	for _, x := range p.Vector {
		b = binary.LittleEndian.AppendUint32(b, math.Float32bits(x))
	}
	keys := make([]string, 0, len(p.Payload))
	for k := range p.Payload {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(keys)))
	for _, k := range keys {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(k)))
		b = append(b, k...)
		v := p.Payload[k]
		b = binary.LittleEndian.AppendUint32(b, uint32(len(v)))
		b = append(b, v...)
	}
	c.h.Write(b)
	c.buf = b
}

func (c *checksum) sum() (s [sha256.Size]byte) {
	c.h.Sum(s[:0])
	return s
}
