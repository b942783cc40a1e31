package qdrant

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
	qc "github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// unroutable is a local port nothing listens on: a request there fails
// fast with Unavailable. No test here needs a Qdrant server.
const unroutable = "127.0.0.1:1"

type env struct {
	store      *Store
	tokens     atomic.Int64
	router     *vector.Router
	tenantA    uuid.UUID
	ctxA, ctxB context.Context
	collA      vector.Collection
	collB      vector.Collection
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{tenantA: uuid.New()}
	if cfg.Addr == "" {
		cfg.Addr = unroutable
	}
	if cfg.TokenFunc == nil {
		cfg.TokenFunc = func(ctx context.Context, collection string) (string, error) {
			e.tokens.Add(1)
			return "token-for-" + collection, nil
		}
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	e.store = s
	tenantB := uuid.New()
	regions := vector.NewStaticRegions(map[uuid.UUID]string{e.tenantA: "r", tenantB: "r"})
	e.router = vector.NewRouter(regions, map[string]vector.Store{"r": s})
	e.ctxA, e.collA = scoped(t, e.router, e.tenantA)
	e.ctxB, e.collB = scoped(t, e.router, tenantB)
	return e
}

func scoped(t *testing.T, r *vector.Router, tenant uuid.UUID) (context.Context, vector.Collection) {
	t.Helper()
	ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: tenant, Entity: uuid.New()})
	if err != nil {
		t.Fatalf("WithScope: %v", err)
	}
	c, err := r.Collection(ctx)
	if err != nil {
		t.Fatalf("Router.Collection: %v", err)
	}
	return ctx, c
}

func TestCollectionName(t *testing.T) {
	e := newEnv(t, Config{})
	a, b := CollectionName(e.collA), CollectionName(e.collB)
	if a == b {
		t.Fatalf("two tenants share the collection name %q", a)
	}
	a2 := CollectionName(mustGeneration(t, e.collA, 2))
	a10 := CollectionName(mustGeneration(t, e.collA, 10))
	aMax := CollectionName(mustGeneration(t, e.collA, math.MaxUint32))
	re := regexp.MustCompile(`^bulkhead_[0-9a-f]{32}_g[1-9][0-9]*$`)
	for _, n := range []string{a, b, a2, a10, aMax} {
		if !re.MatchString(n) {
			t.Fatalf("collection name %q does not match %s", n, re)
		}
	}
	hexA := "bulkhead_" + strings.ReplaceAll(e.tenantA.String(), "-", "")
	for got, want := range map[string]string{a: hexA + "_g1", a2: hexA + "_g2", a10: hexA + "_g10", aMax: hexA + "_g4294967295"} {
		if got != want {
			t.Fatalf("CollectionName = %q, want %q", got, want)
		}
	}
	// A pure function of the tenant UUID and the generation: another
	// router, another region, the same tenant → the same name.
	r2 := vector.NewRouter(vector.NewStaticRegions(map[uuid.UUID]string{e.tenantA: "other"}), map[string]vector.Store{"other": e.store})
	_, c2 := scoped(t, r2, e.tenantA)
	if got := CollectionName(c2); got != a {
		t.Fatalf("same tenant via another router: %q, want %q", got, a)
	}
	if got := CollectionName(mustGeneration(t, c2, 2)); got != a2 {
		t.Fatalf("same tenant and generation via another router: %q, want %q", got, a2)
	}
	if got := CollectionName(e.collA); got != a {
		t.Fatalf("CollectionName not deterministic: %q then %q", a, got)
	}
}

func mustGeneration(t *testing.T, c vector.Collection, g uint32) vector.Collection {
	t.Helper()
	cg, err := c.AtGeneration(g)
	if err != nil {
		t.Fatalf("AtGeneration(%d): %v", g, err)
	}
	return cg
}

func TestClassify(t *testing.T) {
	var netErr error = &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connection refused")}
	cases := []struct {
		name string
		err  error
		want error
	}{
		{"nil", nil, nil},
		{"NotFound", status.Error(codes.NotFound, "Not found: Collection `bulkhead_x` doesn't exist!"), vector.ErrNotFound},
		{"PermissionDenied", status.Error(codes.PermissionDenied, "Access to collection bulkhead_y is denied"), vector.ErrForbidden},
		{"Unauthenticated", status.Error(codes.Unauthenticated, "Invalid api-key"), vector.ErrForbidden},
		{"Unavailable", status.Error(codes.Unavailable, "connection refused"), vector.ErrUnavailable},
		{"DeadlineExceeded", status.Error(codes.DeadlineExceeded, "deadline"), vector.ErrUnavailable},
		{"Canceled", status.Error(codes.Canceled, "canceled"), vector.ErrUnavailable},
		{"ResourceExhausted", status.Error(codes.ResourceExhausted, "rate limited"), vector.ErrUnavailable},
		{"Internal", status.Error(codes.Internal, "boom"), vector.ErrUnavailable},
		{"Unknown", status.Error(codes.Unknown, "?"), vector.ErrUnavailable},
		{"InvalidArgument dimension", status.Error(codes.InvalidArgument, "Wrong input: Vector dimension error: expected dim: 4, got 3"), vector.ErrDimension},
		{"InvalidArgument missing", status.Error(codes.InvalidArgument, "Collection bulkhead_x doesn't exist"), vector.ErrNotFound},
		{"InvalidArgument other", status.Error(codes.InvalidArgument, "Wrong input: something"), vector.ErrUnavailable},
		{"wrapped status", fmt.Errorf("Search() failed: %w", status.Error(codes.NotFound, "missing")), vector.ErrNotFound},
		{"context deadline", context.DeadlineExceeded, vector.ErrUnavailable},
		{"wrapped context canceled", fmt.Errorf("x: %w", context.Canceled), vector.ErrUnavailable},
		{"net error", netErr, vector.ErrUnavailable},
		{"plain error", errors.New("failed to delete collection"), vector.ErrUnavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := classify(tc.err); got != tc.want {
				t.Fatalf("classify(%v) = %v, want %v", tc.err, got, tc.want)
			}
			w := wrap("op", "bulkhead_x", tc.err)
			if tc.err == nil {
				if w != nil {
					t.Fatalf("wrap(nil) = %v", w)
				}
				return
			}
			if !errors.Is(w, tc.want) || !errors.Is(w, tc.err) {
				t.Fatalf("wrap = %v: want errors.Is %v and the original", w, tc.want)
			}
		})
	}
	// The sentinels keep their root errors (the HTTP layer's table).
	if !errors.Is(wrap("op", "x", status.Error(codes.NotFound, "")), bulkhead.ErrNotFound) ||
		!errors.Is(wrap("op", "x", status.Error(codes.PermissionDenied, "")), bulkhead.ErrForbidden) ||
		!errors.Is(wrap("op", "x", status.Error(codes.InvalidArgument, "dimension")), bulkhead.ErrInvalid) {
		t.Fatal("wrapped sentinels lost their bulkhead root errors")
	}
}

func TestConfigValidation(t *testing.T) {
	bad := map[string]Config{
		"empty address":    {},
		"no port":          {Addr: "qdrant.internal"},
		"empty host":       {Addr: ":6334"},
		"port zero":        {Addr: "localhost:0"},
		"port too big":     {Addr: "localhost:70000"},
		"port not numeric": {Addr: "localhost:grpc"},
		"negative timeout": {Addr: "localhost:6334", Timeout: -time.Second},
	}
	for name, cfg := range bad {
		t.Run(name, func(t *testing.T) {
			s, err := New(cfg)
			if err == nil {
				s.Close()
				t.Fatalf("New(%+v) succeeded", cfg)
			}
			if !errors.Is(err, bulkhead.ErrInvalid) {
				t.Fatalf("New(%+v) = %v, want bulkhead.ErrInvalid", cfg, err)
			}
		})
	}
	for _, tc := range []struct {
		cfg  Config
		want time.Duration
	}{
		{Config{Addr: "localhost:6334"}, DefaultTimeout},
		{Config{Addr: "[::1]:6334", Timeout: 250 * time.Millisecond}, 250 * time.Millisecond},
	} {
		cfg, want := tc.cfg, tc.want
		s, err := New(cfg)
		if err != nil {
			t.Fatalf("New(%+v): %v", cfg, err)
		}
		if s.timeout != want {
			t.Fatalf("New(%+v).timeout = %v, want %v", cfg, s.timeout, want)
		}
		s.Close()
	}
}

// TestAccessCheckedFirst calls every method of the backend itself (not the
// router) with a reference the context may not use. Each must fail with
// the access error, before any token is fetched or request sent: against
// an unreachable server a network attempt would be ErrUnavailable.
func TestAccessCheckedFirst(t *testing.T) {
	e := newEnv(t, Config{Timeout: 300 * time.Millisecond})
	q := []float32{1, 0}
	pts := []vector.Point{{ID: uuid.New(), Vector: q}}
	calls := map[string]func(ctx context.Context, c vector.Collection) error{
		"CreateCollection": func(ctx context.Context, c vector.Collection) error { return e.store.CreateCollection(ctx, c, 2) },
		"DropCollection":   func(ctx context.Context, c vector.Collection) error { return e.store.DropCollection(ctx, c) },
		"Upsert":           func(ctx context.Context, c vector.Collection) error { return e.store.Upsert(ctx, c, pts) },
		"Delete": func(ctx context.Context, c vector.Collection) error {
			return e.store.Delete(ctx, c, []uuid.UUID{pts[0].ID})
		},
		"Search": func(ctx context.Context, c vector.Collection) error {
			_, err := e.store.Search(ctx, c, q, 1)
			return err
		},
		"Stats": func(ctx context.Context, c vector.Collection) error {
			_, err := e.store.Stats(ctx, c)
			return err
		},
		"Scroll": func(ctx context.Context, c vector.Collection) error {
			_, err := e.store.Scroll(ctx, c, uuid.Nil, 10)
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			for what, tc := range map[string]struct {
				ctx  context.Context
				c    vector.Collection
				want error
			}{
				"A's collection in B's scope":   {e.ctxB, e.collA, vector.ErrForbidden},
				"A's generation 2 in B's scope": {e.ctxB, mustGeneration(t, e.collA, 2), vector.ErrForbidden},
				"zero Collection":               {e.ctxA, vector.Collection{}, vector.ErrForbidden},
				"no scope":                      {context.Background(), e.collA, bulkhead.ErrUnauthenticated},
			} {
				start := time.Now()
				err := call(tc.ctx, tc.c)
				if !errors.Is(err, tc.want) || errors.Is(err, vector.ErrUnavailable) {
					t.Fatalf("%s: %v, want %v and not ErrUnavailable", what, err, tc.want)
				}
				if d := time.Since(start); d > 100*time.Millisecond {
					t.Fatalf("%s took %v: did it touch the network?", what, d)
				}
			}
			if n := e.tokens.Load(); n != 0 {
				t.Fatalf("TokenFunc called %d times for refused calls", n)
			}
		})
	}
}

// TestUnreachable: with access granted, a server that cannot be reached is
// ErrUnavailable, within the timeout, never an empty result.
func TestUnreachable(t *testing.T) {
	e := newEnv(t, Config{Timeout: 2 * time.Second})
	start := time.Now()
	hits, err := e.store.Search(e.ctxA, e.collA, []float32{1, 0}, 3)
	if !errors.Is(err, vector.ErrUnavailable) || hits != nil {
		t.Fatalf("Search against %s = %v, %v; want ErrUnavailable and no hits", unroutable, hits, err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Search took %v, more than the timeout", d)
	}
	if err := e.store.Upsert(e.ctxA, e.collA, nil); !errors.Is(err, vector.ErrUnavailable) {
		t.Fatalf("Upsert against %s = %v, want ErrUnavailable", unroutable, err)
	}
	if e.tokens.Load() == 0 {
		t.Fatal("TokenFunc never called for allowed calls")
	}
}

// TestCredentials checks what begin attaches to a request: the deadline,
// and the TokenFunc's token for this collection in place of the API key.
func TestCredentials(t *testing.T) {
	var asked []string
	e := newEnv(t, Config{APIKey: "static", Timeout: time.Second, TokenFunc: func(ctx context.Context, collection string) (string, error) {
		asked = append(asked, collection)
		return "jwt-" + collection, nil
	}})
	// A caller's own api-key metadata is replaced, not duplicated.
	ctx := metadata.AppendToOutgoingContext(e.ctxA, "api-key", "caller")
	rctx, cancel, name, err := e.store.begin(ctx, e.collA)
	if err != nil {
		t.Fatalf("begin: %v", err)
	}
	defer cancel()
	if name != CollectionName(e.collA) || len(asked) != 1 || asked[0] != name {
		t.Fatalf("begin name %q, TokenFunc asked for %v", name, asked)
	}
	md, _ := metadata.FromOutgoingContext(rctx)
	if got := md.Get("api-key"); len(got) != 1 || got[0] != "jwt-"+name {
		t.Fatalf("api-key metadata = %v, want [jwt-%s]", got, name)
	}
	if dl, ok := rctx.Deadline(); !ok || time.Until(dl) > time.Second {
		t.Fatalf("deadline %v, %v; want within 1s", dl, ok)
	}
	// Another generation is another collection: TokenFunc is asked for
	// that one's name.
	a2 := mustGeneration(t, e.collA, 2)
	_, cancelG, name2, err := e.store.begin(e.ctxA, a2)
	if err != nil {
		t.Fatalf("begin generation 2: %v", err)
	}
	cancelG()
	if name2 != CollectionName(a2) || name2 == name || len(asked) != 2 || asked[1] != name2 {
		t.Fatalf("generation 2: begin name %q, TokenFunc asked for %v", name2, asked)
	}

	// Without a TokenFunc, the static key.
	s2, err := New(Config{Addr: unroutable, APIKey: "static"})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rctx2, cancel2, _, err := s2.begin(e.ctxA, e.collA)
	if err != nil {
		t.Fatal(err)
	}
	defer cancel2()
	md2, _ := metadata.FromOutgoingContext(rctx2)
	if got := md2.Get("api-key"); len(got) != 1 || got[0] != "static" {
		t.Fatalf("api-key metadata = %v, want [static]", got)
	}
}

func TestTokenErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		token string
		err   error
		want  error
	}{
		"forbidden":       {"", fmt.Errorf("no grant: %w", bulkhead.ErrForbidden), bulkhead.ErrForbidden},
		"unauthenticated": {"", bulkhead.ErrUnauthenticated, bulkhead.ErrUnauthenticated},
		"issuer down":     {"", errors.New("vault sealed"), vector.ErrUnavailable},
		"empty token":     {"", nil, vector.ErrUnavailable},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t, Config{TokenFunc: func(context.Context, string) (string, error) { return tc.token, tc.err }})
			_, err := e.store.Stats(e.ctxA, e.collA)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Stats = %v, want %v", err, tc.want)
			}
		})
	}
}

// TestCheckPoint: the defence-in-depth check on every returned point.
func TestCheckPoint(t *testing.T) {
	e := newEnv(t, Config{})
	id := uuid.New()
	own := map[string]*qc.Value{keyTenant: qc.NewValueString(e.tenantA.String())}
	if got, err := e.store.checkPoint(e.collA, "n", qc.NewIDUUID(id.String()), own); err != nil || got != id {
		t.Fatalf("own point: %v, %v", got, err)
	}
	for name, tc := range map[string]struct {
		id      *qc.PointId
		payload map[string]*qc.Value
	}{
		"other tenant":   {qc.NewIDUUID(id.String()), map[string]*qc.Value{keyTenant: qc.NewValueString(uuid.NewString())}},
		"no tenant":      {qc.NewIDUUID(id.String()), nil},
		"numeric tenant": {qc.NewIDUUID(id.String()), map[string]*qc.Value{keyTenant: qc.NewValueInt(1)}},
		"numeric id":     {qc.NewIDNum(7), own},
	} {
		if _, err := e.store.checkPoint(e.collA, "n", tc.id, tc.payload); !errors.Is(err, vector.ErrUnavailable) {
			t.Fatalf("%s: %v, want ErrUnavailable", name, err)
		}
	}
}

func TestUserPayload(t *testing.T) {
	if got := userPayload(map[string]*qc.Value{keyTenant: qc.NewValueString("t")}); got != nil {
		t.Fatalf("no payload = %v, want nil", got)
	}
	p := map[string]*qc.Value{
		keyTenant:  qc.NewValueString("t"),
		keyPayload: qc.NewValueStruct(&qc.Struct{Fields: map[string]*qc.Value{"bulkhead_tenant": qc.NewValueString("user's own key"), "n": qc.NewValueString("1")}}),
	}
	got := userPayload(p)
	if len(got) != 2 || got["n"] != "1" || got["bulkhead_tenant"] != "user's own key" {
		t.Fatalf("userPayload = %v", got)
	}
}
