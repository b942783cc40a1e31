package qdrant

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/metadata"
)

// Layout of a bulkhead collection in Qdrant.
const (
	namePrefix = "bulkhead_"
	// vecCosine is searched (Cosine distance: Qdrant stores it normalised).
	vecCosine = "cos"
	// vecRaw keeps the vector exactly as given (Dot distance is stored
	// unmodified; no HNSW graph, on disk), for Scroll and Router.Move.
	vecRaw = "raw"
	// Payload keys: the owning tenant, and the caller's payload nested
	// under its own key so that no caller key can collide with ours.
	keyTenant  = "bulkhead_tenant"
	keyPayload = "bulkhead_payload"
)

// Store is the Qdrant backend of vector.Store: one Qdrant collection per
// tenant and generation, named by CollectionName. It is safe for concurrent use.
type Store struct {
	cfg     Config
	timeout time.Duration
	client  *qc.Client
}

var _ vector.Store = (*Store)(nil)

// New validates cfg and returns a Store using a gRPC connection pool to
// cfg.Addr. It does not contact the server (the client's compatibility
// check is skipped), so it succeeds while Qdrant is down; calls then fail
// with vector.ErrUnavailable. It returns a bulkhead.ErrInvalid error for a
// bad Config.
func New(cfg Config) (*Store, error) {
	host, port, timeout, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("qdrant vector store: %w", err)
	}
	client, err := qc.NewClient(&qc.Config{
		Host:                   host,
		Port:                   port,
		UseTLS:                 cfg.UseTLS,
		TLSConfig:              cfg.TLSConfig,
		PoolSize:               cfg.PoolSize,
		SkipCompatibilityCheck: true,
		// APIKey is deliberately not given to the client: begin sets the
		// credential per request, so a TokenFunc's token replaces it.
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant vector store %s: %w (%w)", cfg.Addr, vector.ErrUnavailable, err)
	}
	return &Store{cfg: cfg, timeout: timeout, client: client}, nil
}

// Close closes the connections. Later calls fail.
func (s *Store) Close() error { return s.client.Close() }

// CollectionName returns the name of c's Qdrant collection: "bulkhead_",
// the 32 hex digits of c's tenant UUID, "_g" and c's generation in decimal,
// e.g. "bulkhead_0b9a3f5e2f4c4f7e9d553c2b1a0e9f10_g1". It depends on
// nothing but c.Tenant() and c.Generation(), which only a Router (and
// Collection.AtGeneration on its references) set; no name is ever taken
// from request input. Distinct (tenant, generation) pairs give distinct
// names.
func CollectionName(c vector.Collection) string {
	t := c.Tenant()
	return namePrefix + hex.EncodeToString(t[:]) + "_g" + strconv.FormatUint(uint64(c.Generation()), 10)
}

// begin checks access (before anything touches the network), bounds ctx by
// the configured timeout and attaches the request's credential.
func (s *Store) begin(ctx context.Context, c vector.Collection) (context.Context, context.CancelFunc, string, error) {
	if err := vector.CheckAccess(ctx, c); err != nil {
		return nil, nil, "", err
	}
	name := CollectionName(c)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	token := s.cfg.APIKey
	if s.cfg.TokenFunc != nil {
		var err error
		token, err = s.cfg.TokenFunc(ctx, name)
		switch {
		case err != nil && (errors.Is(err, bulkhead.ErrForbidden) || errors.Is(err, bulkhead.ErrUnauthenticated)):
			cancel()
			return nil, nil, "", fmt.Errorf("qdrant token for %s: %w", name, err)
		case err != nil:
			cancel()
			return nil, nil, "", fmt.Errorf("qdrant token for %s: %w (%w)", name, vector.ErrUnavailable, err)
		case token == "":
			cancel()
			return nil, nil, "", fmt.Errorf("qdrant token for %s: empty token: %w", name, vector.ErrUnavailable)
		}
	}
	if token != "" {
		md, _ := metadata.FromOutgoingContext(ctx)
		md = md.Copy()
		md.Set("api-key", token)
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	return ctx, cancel, name, nil
}

// dimension returns the dimension of the named collection, ErrNotFound if
// it does not exist, ErrUnavailable if it is not laid out by this package.
func (s *Store) dimension(ctx context.Context, name string) (int, error) {
	info, err := s.client.GetCollectionInfo(ctx, name)
	if err != nil {
		return 0, wrap("get collection", name, err)
	}
	params := info.GetConfig().GetParams().GetVectorsConfig().GetParamsMap().GetMap()
	cos, raw := params[vecCosine], params[vecRaw]
	if cos == nil || raw == nil || cos.GetDistance() != qc.Distance_Cosine || cos.GetSize() != raw.GetSize() || cos.GetSize() == 0 {
		return 0, fmt.Errorf("qdrant collection %s does not have bulkhead's layout: %w", name, vector.ErrUnavailable)
	}
	return int(cos.GetSize()), nil
}

// CreateCollection implements vector.Store.
func (s *Store) CreateCollection(ctx context.Context, c vector.Collection, dim int) error {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return err
	}
	defer cancel()
	if err := vector.CheckDimension(dim); err != nil {
		return err
	}
	exists := func() (bool, error) {
		got, err := s.dimension(ctx, name)
		switch {
		case errors.Is(err, vector.ErrNotFound):
			return false, nil
		case err != nil:
			return false, err
		case got != dim:
			return true, fmt.Errorf("create collection %s with dimension %d: exists with %d: %w", name, dim, got, vector.ErrDimension)
		}
		return true, nil
	}
	if ok, err := exists(); ok || err != nil {
		return err
	}
	m0 := uint64(0)
	onDisk := true
	cerr := s.client.CreateCollection(ctx, &qc.CreateCollection{
		CollectionName: name,
		VectorsConfig: qc.NewVectorsConfigMap(map[string]*qc.VectorParams{
			vecCosine: {Size: uint64(dim), Distance: qc.Distance_Cosine},
			vecRaw:    {Size: uint64(dim), Distance: qc.Distance_Dot, OnDisk: &onDisk, HnswConfig: &qc.HnswConfigDiff{M: &m0}},
		}),
	})
	if cerr == nil {
		return nil
	}
	// A concurrent CreateCollection may have won: same dimension is success.
	if ok, err := exists(); ok || err != nil {
		return err
	}
	return wrap("create collection", name, cerr)
}

// DropCollection implements vector.Store.
func (s *Store) DropCollection(ctx context.Context, c vector.Collection) error {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return err
	}
	defer cancel()
	ok, err := s.client.CollectionExists(ctx, name)
	if err != nil {
		return wrap("drop collection", name, err)
	}
	if !ok {
		return fmt.Errorf("drop collection %s: %w", name, vector.ErrNotFound)
	}
	res, err := s.client.GetCollectionsClient().Delete(ctx, &qc.DeleteCollection{CollectionName: name})
	if err != nil {
		return wrap("drop collection", name, err)
	}
	if !res.GetResult() {
		return fmt.Errorf("drop collection %s: %w", name, vector.ErrNotFound)
	}
	return nil
}

// Upsert implements vector.Store. Input is validated against the
// collection's dimension before anything is sent, and the points go in
// one request with wait=true (acknowledged once applied and in Qdrant's
// WAL). On vector.ErrUnavailable the write may or may not have been
// applied; retrying is safe.
func (s *Store) Upsert(ctx context.Context, c vector.Collection, points []vector.Point) error {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return err
	}
	defer cancel()
	dim, err := s.dimension(ctx, name) // ErrNotFound: never auto-created
	if err != nil {
		return err
	}
	seen := make(map[uuid.UUID]struct{}, len(points))
	for _, p := range points {
		if err := p.Validate(dim); err != nil {
			return fmt.Errorf("upsert into %s: %w", name, err)
		}
		if _, dup := seen[p.ID]; dup {
			return fmt.Errorf("upsert into %s: %w", name, bulkhead.Invalid("id", "repeated in one upsert: "+p.ID.String()))
		}
		seen[p.ID] = struct{}{}
	}
	if len(points) == 0 {
		return nil
	}
	tenant := c.Tenant().String()
	structs := make([]*qc.PointStruct, len(points))
	for i, p := range points {
		fields := make(map[string]*qc.Value, len(p.Payload))
		for k, v := range p.Payload {
			fields[k] = qc.NewValueString(v)
		}
		structs[i] = &qc.PointStruct{
			Id: qc.NewIDUUID(p.ID.String()),
			Vectors: qc.NewVectorsMap(map[string]*qc.Vector{
				vecCosine: qc.NewVectorDense(slices.Clone(p.Vector)),
				vecRaw:    qc.NewVectorDense(slices.Clone(p.Vector)),
			}),
			Payload: map[string]*qc.Value{
				keyTenant:  qc.NewValueString(tenant),
				keyPayload: qc.NewValueStruct(&qc.Struct{Fields: fields}),
			},
		}
	}
	wait := true
	_, err = s.client.Upsert(ctx, &qc.UpsertPoints{CollectionName: name, Wait: &wait, Points: structs})
	return wrap("upsert into", name, err)
}

// Delete implements vector.Store. It reads the ids first and deletes only
// if all exist. The check and the delete are two requests: a concurrent
// Delete of the same ids may also succeed (both leave the points gone).
func (s *Store) Delete(ctx context.Context, c vector.Collection, ids []uuid.UUID) error {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return err
	}
	defer cancel()
	if _, err := s.dimension(ctx, name); err != nil {
		return err
	}
	uniq := make(map[uuid.UUID]bool, len(ids))
	var pids []*qc.PointId
	for _, id := range ids {
		if !uniq[id] {
			uniq[id] = false
			pids = append(pids, qc.NewIDUUID(id.String()))
		}
	}
	if len(pids) == 0 {
		return nil
	}
	found, err := s.client.Get(ctx, &qc.GetPoints{CollectionName: name, Ids: pids, WithPayload: qc.NewWithPayloadInclude(keyTenant)})
	if err != nil {
		return wrap("delete from", name, err)
	}
	for _, rp := range found {
		id, err := s.checkPoint(c, name, rp.GetId(), rp.GetPayload())
		if err != nil {
			return err
		}
		if _, asked := uniq[id]; asked {
			uniq[id] = true
		}
	}
	for _, id := range ids {
		if !uniq[id] {
			return fmt.Errorf("delete point %s from %s: %w", id, name, vector.ErrNotFound)
		}
	}
	wait := true
	_, err = s.client.Delete(ctx, &qc.DeletePoints{CollectionName: name, Wait: &wait, Points: qc.NewPointsSelectorIDs(pids)})
	return wrap("delete from", name, err)
}

// checkPoint parses a returned point's id and verifies that its tenant
// payload is c's tenant (defence in depth: a collection holding another
// tenant's point is broken, and nothing read from it is used).
func (s *Store) checkPoint(c vector.Collection, name string, pid *qc.PointId, payload map[string]*qc.Value) (uuid.UUID, error) {
	id, err := uuid.Parse(pid.GetUuid())
	if err != nil {
		return uuid.Nil, fmt.Errorf("qdrant %s returned point id %v: %w", name, pid, vector.ErrUnavailable)
	}
	if got := payload[keyTenant].GetStringValue(); got != c.Tenant().String() {
		return uuid.Nil, fmt.Errorf("qdrant %s returned point %s of tenant %q: %w", name, id, got, vector.ErrUnavailable)
	}
	return id, nil
}

func userPayload(payload map[string]*qc.Value) map[string]string {
	fields := payload[keyPayload].GetStructValue().GetFields()
	if len(fields) == 0 {
		return nil
	}
	out := make(map[string]string, len(fields))
	for k, v := range fields {
		out[k] = v.GetStringValue()
	}
	return out
}

// Search implements vector.Store. Qdrant does not order equal scores by
// id, so when the k-th score ties with the next one Search fetches every
// point scoring at least that much and orders them itself.
func (s *Store) Search(ctx context.Context, c vector.Collection, query []float32, k int) ([]vector.Hit, error) {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return nil, err
	}
	defer cancel()
	dim, err := s.dimension(ctx, name)
	if err != nil {
		return nil, err
	}
	if err := vector.CheckQuery(query, dim, k); err != nil {
		return nil, fmt.Errorf("search %s: %w", name, err)
	}
	run := func(limit int, threshold *float32) ([]*qc.ScoredPoint, error) {
		using := vecCosine
		lim := uint64(limit)
		req := &qc.QueryPoints{
			CollectionName: name,
			Query:          qc.NewQueryDense(query),
			Using:          &using,
			Limit:          &lim,
			ScoreThreshold: threshold,
			WithPayload:    qc.NewWithPayload(true),
		}
		if s.cfg.ExactSearch {
			exact := true
			req.Params = &qc.SearchParams{Exact: &exact}
		}
		res, err := s.client.Query(ctx, req)
		return res, wrap("search", name, err)
	}
	res, err := run(k+1, nil)
	if err != nil {
		return nil, err
	}
	if len(res) > k && res[k].GetScore() >= res[k-1].GetScore() {
		// The tie crosses the cut: take everything scoring at least the
		// k-th score (a hair below, so that >= or > thresholds both work).
		th := math.Nextafter32(res[k-1].GetScore(), float32(math.Inf(-1)))
		for limit := 2 * (k + 1); ; limit *= 2 {
			if res, err = run(limit, &th); err != nil {
				return nil, err
			}
			if len(res) < limit || limit >= 4*vector.MaxK {
				break
			}
		}
	}
	hits := make([]vector.Hit, 0, len(res))
	for _, sp := range res {
		id, err := s.checkPoint(c, name, sp.GetId(), sp.GetPayload())
		if err != nil {
			return nil, err
		}
		hits = append(hits, vector.Hit{
			ID:      id,
			Score:   max(-1, min(1, sp.GetScore())),
			Payload: userPayload(sp.GetPayload()),
			Tenant:  c.Tenant(),
		})
	}
	slices.SortFunc(hits, func(a, b vector.Hit) int {
		if a.Score != b.Score {
			if a.Score > b.Score {
				return -1
			}
			return 1
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	if len(hits) > k {
		hits = hits[:k]
	}
	return hits, nil
}

// Stats implements vector.Store. Points is an exact count; Bytes is
// estimated from the count and dimension (ids and both stored copies of
// each vector; payloads are not counted).
func (s *Store) Stats(ctx context.Context, c vector.Collection) (vector.Stats, error) {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return vector.Stats{}, err
	}
	defer cancel()
	dim, err := s.dimension(ctx, name)
	if err != nil {
		return vector.Stats{}, err
	}
	exact := true
	n, err := s.client.Count(ctx, &qc.CountPoints{CollectionName: name, Exact: &exact})
	if err != nil {
		return vector.Stats{}, wrap("count", name, err)
	}
	return vector.Stats{Dimension: dim, Points: int(n), Bytes: int64(n) * int64(16+2*4*dim)}, nil
}

// Scroll implements vector.Store. Qdrant orders UUID point ids by their
// bytes and starts a page at its offset inclusively; Scroll asks for one
// more point, drops after itself, and sorts and filters the page so that it
// holds only ids greater than after, ascending.
func (s *Store) Scroll(ctx context.Context, c vector.Collection, after uuid.UUID, limit int) ([]vector.Point, error) {
	ctx, cancel, name, err := s.begin(ctx, c)
	if err != nil {
		return nil, err
	}
	defer cancel()
	if err := vector.CheckScrollLimit(limit); err != nil {
		return nil, err
	}
	lim := uint32(limit)
	req := &qc.ScrollPoints{
		CollectionName: name,
		Limit:          &lim,
		WithPayload:    qc.NewWithPayload(true),
		WithVectors:    qc.NewWithVectorsInclude(vecRaw),
	}
	if after != uuid.Nil {
		lim++
		req.Offset = qc.NewIDUUID(after.String())
	}
	res, err := s.client.Scroll(ctx, req)
	if err != nil {
		return nil, wrap("scroll", name, err)
	}
	out := make([]vector.Point, 0, len(res))
	for _, rp := range res {
		id, err := s.checkPoint(c, name, rp.GetId(), rp.GetPayload())
		if err != nil {
			return nil, err
		}
		if bytes.Compare(id[:], after[:]) <= 0 {
			continue
		}
		vec := rp.GetVectors().GetVectors().GetVectors()[vecRaw].GetDenseVector().GetData()
		if len(vec) == 0 {
			return nil, fmt.Errorf("qdrant %s returned point %s without its vector: %w", name, id, vector.ErrUnavailable)
		}
		out = append(out, vector.Point{ID: id, Vector: slices.Clone(vec), Payload: userPayload(rp.GetPayload())})
	}
	slices.SortFunc(out, func(a, b vector.Point) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}
