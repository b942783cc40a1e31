package retrieval_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/llm"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/retrieval"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/uuid"
)

// chatServer is a local OpenAI-compatible chat endpoint started by the test:
// it records every prompt it receives and answers citing passage 1.
type chatServer struct {
	*httptest.Server
	mu      sync.Mutex
	prompts []string
}

func newChatServer(t *testing.T) *chatServer {
	cs := &chatServer{}
	cs.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" {
			http.NotFound(w, r)
			return
		}
		var req struct {
			Messages []struct{ Role, Content string } `json:"messages"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		var all strings.Builder
		for _, m := range req.Messages {
			all.WriteString(m.Role + ": " + m.Content + "\n")
		}
		cs.mu.Lock()
		cs.prompts = append(cs.prompts, all.String())
		cs.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"choices": []any{map[string]any{"index": 0, "message": map[string]string{"role": "assistant", "content": "According to the passages, thirty days [1]."}}}})
	}))
	t.Cleanup(cs.Close)
	return cs
}

// take returns and forgets the prompts received so far.
func (cs *chatServer) take() []string {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	p := cs.prompts
	cs.prompts = nil
	return p
}

func (cs *chatServer) chat(t *testing.T) llm.Chat {
	c, err := llm.NewOpenAIChat(llm.OpenAIConfig{BaseURL: cs.URL + "/v1", Model: "test-chat", MaxRetries: 0})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// misroute is a broken vector layer: every search of a tenant's collection
// is answered from another tenant's collection, and the hits are labelled
// as the caller's (so the router's tenant check on hits can't see it).
type misroute struct {
	vector.Store
	router *vector.Router
	on     atomic.Bool
	swap   map[uuid.UUID]uuid.UUID
	lied   atomic.Int64 // foreign hits handed out
}

func (m *misroute) Search(ctx context.Context, c vector.Collection, q []float32, k int) ([]vector.Hit, error) {
	if !m.on.Load() {
		return m.Store.Search(ctx, c, q, k)
	}
	vctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: m.swap[c.Tenant()]})
	if err != nil {
		return nil, err
	}
	vc, err := m.router.Collection(vctx)
	if err == nil {
		vc, err = vc.AtGeneration(c.Generation())
	}
	if err != nil {
		return nil, err
	}
	hits, err := m.Store.Search(vctx, vc, q, k)
	for i := range hits {
		hits[i].Tenant = c.Tenant()
	}
	m.lied.Add(int64(len(hits)))
	return hits, err
}

// TestBothLayersFail: the vector layer answers from the other tenant's
// collection, row-level security is switched off on documents and chunks,
// then both at once; in every case the prompt the chat model receives for
// tenant A holds A's text and none of B's.
func TestBothLayersFail(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	cs := newChatServer(t)
	mr := &misroute{}
	k := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{Chat: cs.chat(t), Wrap: func(s vector.Store) vector.Store { mr.Store = s; return mr }})
	mr.router = k.Router
	w := &world{d: d, k: k}
	w.a, w.ua = w.tenant(t, "acme")
	w.b, w.ub = w.tenant(t, "globex")
	mr.swap = map[uuid.UUID]uuid.UUID{w.a: w.b, w.b: w.a}
	const mineA, mineB = "ACME-OWN-1212", "GLOBEX-SECRET-9931"
	ingest(t, k, w.ua, postgres.NewDocument{Title: "Acme refunds", Content: strings.Replace(policyText, "%s", "thirty ("+mineA+")", 1), Visibility: bulkhead.VisibilityTenant})
	ingest(t, k, w.ub, postgres.NewDocument{Title: "Globex refunds", Content: strings.Replace(policyText, "%s", "sixty ("+mineB+")", 1), Visibility: bulkhead.VisibilityTenant})
	ingest(t, k, w.ub, postgres.NewDocument{Title: "Globex salaries", Content: "Confidential salary bands " + mineB + " for engineering managers and directors.", Visibility: bulkhead.VisibilityTenant})
	admin := testdb.MustConnect(t, d.AdminDSN())
	rls := func(on bool) {
		verb := "ENABLE"
		if !on {
			verb = "DISABLE"
		}
		for _, table := range []string{"documents", "chunks"} {
			if _, err := admin.Exec(context.Background(), "ALTER TABLE bulkhead."+table+" "+verb+" ROW LEVEL SECURITY"); err != nil {
				t.Fatal(err)
			}
		}
	}
	// B's rows seen by A's runtime-role session without a tenant filter:
	// proves RLS is really off when the test says so.
	leaked := func() int {
		var n int
		if err := d.DB.ReadRow(w.ua, `SELECT count(*) FROM bulkhead.chunks WHERE tenant_id <> $1`, []any{w.a}, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	questions := []string{
		"How many days for a refund, and what are the salary bands for engineering managers?",
		"confidential salary bands directors managers",
	}
	for _, c := range []struct {
		name          string
		vectorBroken  bool
		rlsBroken     bool
		wantOwnInSome bool
	}{
		{"healthy", false, false, true},
		{"vector layer broken", true, false, true},
		{"RLS off", false, true, true},
		{"both broken", true, true, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			mr.on.Store(c.vectorBroken)
			rls(!c.rlsBroken)
			defer rls(true)
			defer mr.on.Store(false)
			if got := leaked(); (got > 0) != c.rlsBroken {
				t.Fatalf("A's session sees %d rows of B: RLS broken = %v was not set up", got, c.rlsBroken)
			}
			before := mr.lied.Load()
			for _, q := range questions {
				a, err := k.Service.Answer(w.ua, retrieval.Query{Text: q})
				if err != nil {
					t.Fatalf("answer %q: %v", q, err)
				}
				if strings.Contains(contents(a.Passages), mineB) || strings.Contains(a.Answer, mineB) {
					t.Errorf("%q: B's text in A's answer or passages", q)
				}
			}
			if c.vectorBroken && mr.lied.Load() == before {
				t.Fatal("the broken vector layer handed out no foreign hit: the test did not break it")
			}
			prompts := cs.take()
			own := false
			for _, p := range prompts {
				if strings.Contains(p, mineB) || strings.Contains(p, "Globex") || strings.Contains(p, "sixty") {
					t.Errorf("prompt holds B's text:\n%s", p)
				}
				own = own || strings.Contains(p, mineA)
			}
			if c.wantOwnInSome && !own {
				t.Errorf("no prompt holds A's own passage (%d prompts): the test would pass vacuously", len(prompts))
			}
		})
	}
}

// TestAnswer: with passages the chat model is called and its citations
// kept; with none visible it is not called and the answer says so; without
// a chat model the answer quotes the passages.
func TestAnswer(t *testing.T) {
	t.Parallel()
	d := testdb.New(t)
	cs := newChatServer(t)
	k := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{Chat: cs.chat(t)})
	w := &world{d: d, k: k}
	w.a, w.ua = w.tenant(t, "acme")
	ingest(t, k, w.ua, postgres.NewDocument{Title: "Refunds", Content: strings.Replace(policyText, "%s", "thirty", 1)})
	a, err := k.Service.Answer(w.ua, retrieval.Query{Text: "how many days do customers have for a refund?"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Model != "openai:test-chat" || len(a.Passages) == 0 || len(a.Citations) != 1 || a.Citations[0] != 1 {
		t.Errorf("answer = %+v, want the model's, citing passage 1", a)
	}
	if p := cs.take(); len(p) != 1 || !strings.Contains(p[0], "thirty") || !strings.Contains(p[0], "how many days") {
		t.Errorf("prompts = %q, want one holding the passage and the question", p)
	}
	// Another member sees nothing (the document is private): no model call.
	bob := w.user(t, w.a, "bob")
	a, err = k.Service.Answer(bob, retrieval.Query{Text: "how many days do customers have for a refund?"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Answer != retrieval.NoContext || len(a.Passages) != 0 || a.Model != "" {
		t.Errorf("answer without visible context = %+v", a)
	}
	if p := cs.take(); len(p) != 0 {
		t.Errorf("the model was called without context: %q", p)
	}
	// The chat endpoint down: 503, not an answer.
	cs.Close()
	if _, err := k.Service.Answer(w.ua, retrieval.Query{Text: "refund days"}); !errors.Is(err, bulkhead.ErrUnavailable) {
		t.Errorf("answer with the chat endpoint down: %v, want ErrUnavailable", err)
	}

	// Without a chat model: extractive, quoting the matching sentence.
	k2 := testdb.NewKnowledge(t, d.DB, testdb.KnowledgeOptions{}, w.a)
	a, err = k2.Service.Answer(w.ua, retrieval.Query{Text: "how many days do customers have for a refund?"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Model != retrieval.ModelExtractive || !strings.Contains(a.Answer, "within thirty days") || len(a.Citations) == 0 {
		t.Errorf("extractive answer = %+v", a)
	}
}
