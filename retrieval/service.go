package retrieval

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// ErrNotProvisioned: the caller's tenant exists but its knowledge
// collection does not (never provisioned, or lost). It matches
// bulkhead.ErrUnavailable: retrieval answers 503, never an empty result.
var ErrNotProvisioned = fmt.Errorf("knowledge collection not provisioned: %w", bulkhead.ErrUnavailable)

// ErrModel: the embedding or chat endpoint failed or did not answer in
// time (its deadline, its retries, refused or reset connections, 5xx,
// 429). It matches bulkhead.ErrUnavailable: 503, retry later. The cause is
// wrapped too; llm.Reason classifies it.
var ErrModel = fmt.Errorf("model endpoint failed: %w", bulkhead.ErrUnavailable)

// ErrModelResponse: the model endpoint answered, but with something this
// server can't use (vectors of another dimension than configured, the
// wrong number of them, malformed JSON). Retrying does not help until the
// endpoint or --embedding-dim is fixed. It also matches
// bulkhead.ErrUnavailable, so a caller that doesn't know it still fails
// closed.
var ErrModelResponse = fmt.Errorf("model endpoint answered unusably: %w", bulkhead.ErrUnavailable)

// DefaultMinSimilarity is the Config.MinSimilarity that suits the local
// embedder: unrelated texts score about -0.05 to 0.17 with it, texts
// sharing the question's words 0.4 and more.
const DefaultMinSimilarity = 0.2

// Config wires a Service.
type Config struct {
	DB      *postgres.DB
	Vectors *vector.Router
	// Embedders are the embedding models this server can use, by
	// Model(). A tenant's collection records the model that filled it;
	// its queries need that embedder here. The first is the default for
	// newly provisioned tenants.
	Embedders []llm.Embedder
	// Chat answers questions from passages when set; without it Answer
	// is extractive (sentences quoted from the passages).
	Chat llm.Chat
	// MinSimilarity drops vector hits whose cosine similarity to the
	// question is lower: nearest neighbours always exist, related or not.
	// DefaultMinSimilarity suits the local embedder; tune it per model.
	MinSimilarity float32
	Logger        *slog.Logger
	// Drain is how long Reembed waits after switching generations before
	// its catch-up pass and before dropping the old generation, so that
	// requests that read the old settings finish (default 5s).
	Drain time.Duration
}

// Service is the knowledge layer. It is safe for concurrent use.
type Service struct {
	db        *postgres.DB
	vectors   *vector.Router
	embedders map[string]llm.Embedder
	dflt      string
	chat      llm.Chat
	minSim    float32
	log       *slog.Logger
	drain     time.Duration
	known     known // Ingest's remembered settings
}

// New returns a Service. It returns an error if DB, Vectors or an
// embedder is missing, or two embedders share a model name.
func New(cfg Config) (*Service, error) {
	if cfg.DB == nil || cfg.Vectors == nil || len(cfg.Embedders) == 0 {
		return nil, errors.New("retrieval: needs a database, a vector router and at least one embedder")
	}
	s := &Service{db: cfg.DB, vectors: cfg.Vectors, embedders: make(map[string]llm.Embedder), dflt: cfg.Embedders[0].Model(),
		chat: cfg.Chat, minSim: cfg.MinSimilarity, log: cfg.Logger, drain: cfg.Drain}
	for _, e := range cfg.Embedders {
		if _, dup := s.embedders[e.Model()]; dup {
			return nil, fmt.Errorf("retrieval: embedder %q given twice", e.Model())
		}
		s.embedders[e.Model()] = e
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.drain == 0 {
		s.drain = 5 * time.Second
	}
	return s, nil
}

// target is where the caller's tenant's knowledge lives right now.
type target struct {
	coll  vector.Collection
	embed llm.Embedder
}

// target resolves the caller's collection and embedder from the tenant's
// own row (read in its scope) and the router.
func (s *Service) target(ctx context.Context) (target, error) {
	k, err := s.knowledge(ctx)
	if err != nil {
		return target{}, err
	}
	return s.targetAt(ctx, k.Generation, k.Model)
}

// knowledge reads the caller's tenant's settings in its scope;
// ErrNotProvisioned for a tenant without an embedding model.
func (s *Service) knowledge(ctx context.Context) (postgres.Knowledge, error) {
	k, err := s.db.Knowledge(ctx)
	if err != nil {
		return postgres.Knowledge{}, err
	}
	if k.Model == "" {
		return postgres.Knowledge{}, ErrNotProvisioned
	}
	return k, nil
}

func (s *Service) targetAt(ctx context.Context, gen uint32, model string) (target, error) {
	e, ok := s.embedders[model]
	if !ok {
		return target{}, fmt.Errorf("embedding model %q of this tenant is not configured on this server: %w", model, bulkhead.ErrUnavailable)
	}
	c, err := s.vectors.Collection(ctx)
	if err != nil {
		return target{}, err
	}
	if c, err = c.AtGeneration(gen); err != nil {
		return target{}, err
	}
	return target{coll: c, embed: e}, nil
}

// missing turns a vector ErrNotFound for the collection of an existing
// tenant into ErrNotProvisioned: never an empty answer, and never a "not
// found" either (the tenant exists; its collection is lost), so the cause
// is kept as text only: wrapped, it would also match bulkhead.ErrNotFound.
func missing(err error) error {
	if errors.Is(err, vector.ErrNotFound) {
		return fmt.Errorf("%w (%v)", ErrNotProvisioned, err)
	}
	return err
}

// RegionCache is a vector.Regions over the tenants table that remembers
// answers for ttl. The scope check of postgres.DB.Region is kept on cache
// hits: a scope of another tenant is ErrNotFound.
type RegionCache struct {
	db  *postgres.DB
	ttl time.Duration

	mu sync.Mutex
	m  map[uuid.UUID]regionEntry
}

type regionEntry struct {
	region string
	until  time.Time
}

// maxRegionEntries bounds the cache; it is cleared when full.
const maxRegionEntries = 100_000

// NewRegionCache returns a RegionCache over db.
func NewRegionCache(db *postgres.DB, ttl time.Duration) *RegionCache {
	return &RegionCache{db: db, ttl: ttl, m: make(map[uuid.UUID]regionEntry)}
}

// Region implements vector.Regions.
func (c *RegionCache) Region(ctx context.Context, tenant uuid.UUID) (string, error) {
	if s, ok := bulkhead.ScopeFrom(ctx); ok && s.Tenant != tenant {
		return "", fmt.Errorf("region of tenant %s: %w", tenant, bulkhead.ErrNotFound)
	}
	now := time.Now()
	c.mu.Lock()
	e, ok := c.m[tenant]
	c.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.region, nil
	}
	r, err := c.db.Region(ctx, tenant)
	if err != nil {
		return "", err
	}
	c.mu.Lock()
	if len(c.m) >= maxRegionEntries {
		clear(c.m)
	}
	c.m[tenant] = regionEntry{region: r, until: now.Add(c.ttl)}
	c.mu.Unlock()
	return r, nil
}
