package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/bulkhead-dev/bulkhead/vector/embedded"
	"github.com/bulkhead-dev/bulkhead/vector/qdrant"
	"github.com/google/uuid"
	"github.com/spf13/pflag"
)

// Default bounds on one call to the model endpoint. An embedding call
// blocks an ingest or a query, which should fail fast and be retried; a
// chat answer legitimately takes longer.
const (
	DefaultEmbeddingDeadline = 10 * time.Second
	DefaultChatDeadline      = 45 * time.Second
)

// knowledgeFlags configure the vector backends (residency) and the models.
type knowledgeFlags struct {
	regions      []string
	qdrantKey    string
	embedder     string
	openaiURL    string
	openaiKey    string
	embedModel   string
	embedDim     int
	chatModel    string
	vectorBudget int64
	minSim       float32
	// openaiTimeout and openaiRetries bound each attempt at
	// --openai-base-url, embedDeadline and chatDeadline each call as a
	// whole (llm.OpenAIConfig's Timeout, MaxRetries, Deadline).
	openaiTimeout time.Duration
	openaiRetries int
	embedDeadline time.Duration
	chatDeadline  time.Duration
	// metrics, set by serve, counts and times the model calls.
	metrics *depMetrics
}

func (k *knowledgeFlags) register(f *pflag.FlagSet) {
	f.StringSliceVar(&k.regions, "vector-region", []string{"default=embedded"}, `where each region's vectors live: REGION=embedded (DATA_DIR/vectors/REGION), REGION=embedded:DIR, or REGION=qdrant:HOST:PORT (gRPC); a tenant in a region not listed is refused`)
	f.StringVar(&k.qdrantKey, "qdrant-api-key", "", "API key sent to Qdrant backends (prefer the BULKHEAD_QDRANT_API_KEY variable)")
	f.StringVar(&k.embedder, "embedder", "local", "embedding model for new tenants: local (built in, lexical, no network) or openai (--openai-*)")
	f.StringVar(&k.openaiURL, "openai-base-url", "", "OpenAI-compatible API (OpenAI, Ollama, vLLM, TEI), e.g. http://localhost:11434/v1; enables --embedding-model and --chat-model")
	f.StringVar(&k.openaiKey, "openai-api-key", "", "API key of --openai-base-url (prefer the BULKHEAD_OPENAI_API_KEY variable)")
	f.StringVar(&k.embedModel, "embedding-model", "", "embedding model at --openai-base-url (with --embedding-dim)")
	f.IntVar(&k.embedDim, "embedding-dim", 0, "dimension of --embedding-model's vectors")
	f.DurationVar(&k.openaiTimeout, "openai-timeout", llm.DefaultTimeout, "per attempt: how long one request to --openai-base-url may take (connect, answer, body)")
	f.IntVar(&k.openaiRetries, "openai-max-retries", llm.DefaultMaxRetries, "retries after a failed attempt (429, 5xx, network errors, timeouts), with backoff; 0: none")
	f.DurationVar(&k.embedDeadline, "embedding-deadline", DefaultEmbeddingDeadline, "bound on one embedding call as a whole (every batch, attempt and wait, a Retry-After included): the longest an ingest or query waits on --openai-base-url before it answers 503")
	f.DurationVar(&k.chatDeadline, "chat-deadline", DefaultChatDeadline, "bound on one chat call as a whole (attempts and waits included): the longest /v1/answer waits on --chat-model before it answers 503. Keep it below the HTTP write timeout (1m)")
	f.StringVar(&k.chatModel, "chat-model", "", "chat model at --openai-base-url answering /v1/answer; without it answers quote the passages")
	f.Float32Var(&k.minSim, "min-similarity", retrieval.DefaultMinSimilarity, "vector hits less similar to the question than this are dropped (the default suits the local embedder; tune per model)")
	f.Int64Var(&k.vectorBudget, "vector-memory", embedded.DefaultMemoryBudget, "bytes of embedded collections kept in memory (least recently used beyond it are unloaded)")
}

// errVectorsBusy: a running server holds the embedded vector store.
var errVectorsBusy = errors.New("the embedded vector store is held by a running bulkhead serve")

// knowledge builds the retrieval service over db: a backend per region,
// the embedders and the chat model. close releases the backends.
func (c *config) knowledge(db *postgres.DB, log *slog.Logger) (*retrieval.Service, func(), error) {
	return c.knowledgeWith(db, log, nil)
}

// knowledgeWith is knowledge, calling opened (if not nil) with each
// embedded store it opens (serve exports their metrics).
func (c *config) knowledgeWith(db *postgres.DB, log *slog.Logger, opened func(region string, s *embedded.Store)) (_ *retrieval.Service, _ func(), err error) {
	k := c.know
	var closers []func()
	closeAll := func() {
		for _, f := range closers {
			f()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	stores := make(map[string]vector.Store)
	for _, spec := range k.regions {
		region, backend, ok := strings.Cut(spec, "=")
		if !ok || region == "" {
			return nil, nil, fmt.Errorf("--vector-region %q: want REGION=BACKEND", spec)
		}
		if _, dup := stores[region]; dup {
			return nil, nil, fmt.Errorf("--vector-region: region %q given twice", region)
		}
		kind, arg, _ := strings.Cut(backend, ":")
		switch kind {
		case "embedded":
			dir := arg
			if dir == "" {
				dir = filepath.Join(c.dataDir, "vectors", region)
			}
			s, err := embedded.New(dir, embedded.WithMemoryBudget(k.vectorBudget))
			if errors.Is(err, embedded.ErrLocked) {
				return nil, nil, fmt.Errorf("%w (%s)", errVectorsBusy, dir)
			}
			if err != nil {
				return nil, nil, err
			}
			closers = append(closers, func() { s.Close() })
			stores[region] = s
			if opened != nil {
				opened(region, s)
			}
		case "qdrant":
			s, err := qdrant.New(qdrant.Config{Addr: arg, APIKey: k.qdrantKey})
			if err != nil {
				return nil, nil, fmt.Errorf("--vector-region %s: %w", region, err)
			}
			closers = append(closers, func() { s.Close() })
			stores[region] = s
		default:
			return nil, nil, fmt.Errorf("--vector-region %q: backend must be embedded[:DIR] or qdrant:HOST:PORT", spec)
		}
	}
	if len(stores) == 0 {
		return nil, nil, errors.New("--vector-region: at least one region is needed")
	}
	var embedders []llm.Embedder
	local := llm.NewLocal()
	var remote llm.Embedder
	var chat llm.Chat
	if k.openaiURL != "" {
		if k.openaiTimeout <= 0 || k.embedDeadline <= 0 || k.chatDeadline <= 0 || k.openaiRetries < 0 {
			return nil, nil, errors.New("--openai-timeout, --embedding-deadline and --chat-deadline must be positive, --openai-max-retries at least 0")
		}
		retries := k.openaiRetries
		if retries == 0 {
			retries = -1 // llm: 0 is the default, negative is none
		}
		oc := llm.OpenAIConfig{BaseURL: k.openaiURL, APIKey: bulkhead.Secret(k.openaiKey), Model: k.embedModel, Dimension: k.embedDim,
			Timeout: k.openaiTimeout, MaxRetries: retries, Deadline: k.embedDeadline}
		if k.embedModel != "" {
			e, err := llm.NewOpenAIEmbedder(oc)
			if err != nil {
				return nil, nil, fmt.Errorf("--embedding-model: %w", err)
			}
			remote = e
			if k.metrics != nil {
				remote = llm.ObserveEmbedder(e, k.metrics.model(depEmbedder))
			}
		}
		if k.chatModel != "" {
			oc.Model, oc.Dimension, oc.Deadline = k.chatModel, 0, k.chatDeadline
			ch, err := llm.NewOpenAIChat(oc)
			if err != nil {
				return nil, nil, fmt.Errorf("--chat-model: %w", err)
			}
			chat = ch
			if k.metrics != nil {
				chat = llm.ObserveChat(ch, k.metrics.model(depChat))
			}
		}
	} else if k.embedModel != "" || k.chatModel != "" {
		return nil, nil, errors.New("--embedding-model and --chat-model need --openai-base-url")
	}
	switch k.embedder {
	case "local":
		embedders = append(embedders, local)
		if remote != nil {
			embedders = append(embedders, remote)
		}
	case "openai":
		if remote == nil {
			return nil, nil, errors.New("--embedder openai needs --openai-base-url, --embedding-model and --embedding-dim")
		}
		embedders = append(embedders, remote, local)
	default:
		return nil, nil, fmt.Errorf("--embedder %q: local or openai", k.embedder)
	}
	router := vector.NewRouter(retrieval.NewRegionCache(db, 5*time.Second), stores)
	svc, err := retrieval.New(retrieval.Config{DB: db, Vectors: router, Embedders: embedders, Chat: chat, MinSimilarity: k.minSim, Logger: log})
	if err != nil {
		return nil, nil, err
	}
	return svc, closeAll, nil
}

// knowledgeOps are the control-plane operations on tenants' knowledge. The
// CLI runs them in process (retrieval.Service) or, when a running server
// holds the embedded vector store, through that server's /admin/v1 API.
type knowledgeOps interface {
	CreateTenant(ctx context.Context, name, region string) (bulkhead.Tenant, error)
	DeleteTenant(ctx context.Context, id uuid.UUID, force bool) (retrieval.DeleteResult, error)
	Provision(ctx context.Context, id uuid.UUID) error
	Reconcile(ctx context.Context, id uuid.UUID) (retrieval.ReconcileStats, error)
	Reembed(ctx context.Context, id uuid.UUID, model string) (retrieval.ReconcileStats, error)
}

// serveFile is where serve records its address for the CLI.
func serveFile(dataDir string) string { return filepath.Join(dataDir, "serve.json") }

type serveInfo struct {
	Addr    string `json:"addr"`
	PID     int    `json:"pid"`
	TLSCert string `json:"tls_cert,omitempty"` // absolute path; set when the server serves HTTPS
}

// knowledgeFor returns the ops for the CLI: in process, or through the
// running server when it holds the vector store.
func (c *config) knowledgeFor(db *postgres.DB, log *slog.Logger) (knowledgeOps, func(), error) {
	svc, close, err := c.knowledge(db, log)
	if err == nil {
		return svc, close, nil
	}
	if !errors.Is(err, errVectorsBusy) {
		return nil, nil, err
	}
	b, rerr := os.ReadFile(serveFile(c.dataDir))
	var info serveInfo
	if rerr != nil || json.Unmarshal(b, &info) != nil || info.Addr == "" {
		return nil, nil, fmt.Errorf("%w, and %s does not say where it listens: stop it or use its /admin/v1 API", err, serveFile(c.dataDir))
	}
	tok, rerr := os.ReadFile(filepath.Join(c.dataDir, "operator-token"))
	if rerr != nil {
		return nil, nil, fmt.Errorf("%w; the operator token: %w", err, rerr)
	}
	log.Debug("control plane through the running server", "addr", info.Addr)
	if info.TLSCert != "" {
		tc, err := pinnedTLS(info.TLSCert)
		if err != nil {
			return nil, nil, err
		}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: tc}}
		return &adminClient{base: "https://" + info.Addr + "/admin/v1", token: strings.TrimSpace(string(tok)), hc: hc}, func() {}, nil
	}
	return &adminClient{base: "http://" + info.Addr + "/admin/v1", token: strings.TrimSpace(string(tok)), hc: &http.Client{}}, func() {}, nil
}

// adminClient runs knowledgeOps through a running server's /admin/v1.
type adminClient struct {
	base  string
	token string
	hc    *http.Client
}

func (a *adminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("control plane of the running server: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		var p struct{ Title, Detail string }
		_ = json.Unmarshal(b, &p)
		return &statusError{code: resp.StatusCode, title: p.Title, detail: p.Detail}
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func (a *adminClient) CreateTenant(ctx context.Context, name, region string) (bulkhead.Tenant, error) {
	var t bulkhead.Tenant
	err := a.do(ctx, "POST", "/tenants", map[string]string{"name": name, "region": region}, &t)
	return t, err
}

// DeleteTenant: 204 deleted, 404 there was no such tenant. What a forced
// delete left behind is in the server's log and the erasure record.
func (a *adminClient) DeleteTenant(ctx context.Context, id uuid.UUID, force bool) (retrieval.DeleteResult, error) {
	path := "/tenants/" + id.String()
	if force {
		path += "?force=true"
	}
	err := a.do(ctx, "DELETE", path, nil, nil)
	var se *statusError
	if errors.As(err, &se) && se.code == http.StatusNotFound {
		return retrieval.DeleteResult{}, nil
	}
	return retrieval.DeleteResult{Deleted: err == nil}, err
}

// statusError is a running server's error answer.
type statusError struct {
	code          int
	title, detail string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("running server answered %d %s %s", e.code, e.title, e.detail)
}

func (a *adminClient) Provision(ctx context.Context, id uuid.UUID) error {
	return a.do(ctx, "POST", "/tenants/"+id.String()+"/provision", nil, nil)
}

func (a *adminClient) Reconcile(ctx context.Context, id uuid.UUID) (retrieval.ReconcileStats, error) {
	var st retrieval.ReconcileStats
	return st, a.do(ctx, "POST", "/tenants/"+id.String()+"/reconcile", nil, &st)
}

func (a *adminClient) Reembed(ctx context.Context, id uuid.UUID, model string) (retrieval.ReconcileStats, error) {
	var st retrieval.ReconcileStats
	return st, a.do(ctx, "POST", "/tenants/"+id.String()+"/reembed", map[string]string{"model": model}, &st)
}
