package vector

import (
	"context"
	"fmt"
	"sync"

	"github.com/google/uuid"
)

// Regions looks up the region a tenant's data lives in. In production it is
// backed by the tenants table (bulkhead.Tenant.Region); implementations
// should cache, since the Router asks on every call, and must return an
// error matching bulkhead.ErrNotFound for an unknown tenant.
type Regions interface {
	Region(ctx context.Context, tenant uuid.UUID) (string, error)
}

// StaticRegions is a Regions held in memory, for tests and single-region
// deployments. The zero value knows no tenant. It is safe for concurrent
// use.
type StaticRegions struct {
	mu sync.RWMutex
	m  map[uuid.UUID]string
}

// NewStaticRegions returns a StaticRegions holding a copy of m.
func NewStaticRegions(m map[uuid.UUID]string) *StaticRegions {
	s := &StaticRegions{m: make(map[uuid.UUID]string, len(m))}
	for t, r := range m {
		s.m[t] = r
	}
	return s
}

// Region returns tenant's region, or ErrNotFound.
func (s *StaticRegions) Region(_ context.Context, tenant uuid.UUID) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r, ok := s.m[tenant]
	if !ok {
		return "", fmt.Errorf("region of tenant %s: %w", tenant, ErrNotFound)
	}
	return r, nil
}

// Set records tenant's region. Used as Router.Move's flip callback in tests.
func (s *StaticRegions) Set(tenant uuid.UUID, region string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[uuid.UUID]string)
	}
	s.m[tenant] = region
}
