package httpapi_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/bulkhead-dev/bulkhead/internal/testdb"
)

// TestTamperedSealedDataFailsClosedTypedAndAlone tampers with sealed
// values as a superuser would (copying a ciphertext to another row,
// replacing one by plaintext, dropping it): a direct read answers the
// damaged-data problem (409, never 500) without any of the text, with an
// audit_log entry and a metric; a query skips the damaged chunk and still
// answers with the intact one.
func TestTamperedSealedDataFailsClosedTypedAndAlone(t *testing.T) {
	a := newAPI(t)
	su := testdb.MustConnect(t, a.db.AdminDSN())
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := su.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	newDoc := func(content string) string {
		t.Helper()
		code, m, body := a.do("T1-alice", "POST", "/v1/documents", map[string]any{"title": "memo", "content": content, "visibility": "private", "confidential": true})
		if code != 201 {
			t.Fatalf("create document: %d %s", code, body)
		}
		return m["id"].(string)
	}
	intact := newDoc("zebra migration intact memo")
	copied := newDoc("zebra migration copied memo")
	dropped := newDoc("zebra migration dropped memo")
	// A ciphertext copied from another row doesn't open; a sealed value
	// replaced by plaintext (content_sealed NULL) is not served.
	exec(`UPDATE bulkhead.documents SET content_sealed = (SELECT content_sealed FROM bulkhead.documents WHERE id = $1) WHERE id = $2`, intact, copied)
	exec(`UPDATE bulkhead.chunks SET content_sealed = (SELECT content_sealed FROM bulkhead.chunks WHERE document_id = $1 LIMIT 1) WHERE document_id = $2`, intact, copied)
	exec(`UPDATE bulkhead.documents SET content_sealed = NULL, content = 'zebra plaintext planted' WHERE id = $1`, dropped)
	exec(`UPDATE bulkhead.chunks SET content_sealed = NULL, content = 'zebra plaintext planted' WHERE document_id = $1`, dropped)

	for _, id := range []string{copied, dropped} {
		code, m, body := a.do("T1-alice", "GET", "/v1/documents/"+id, nil)
		if code != http.StatusConflict || m["type"] != "https://bulkhead.dev/problems/damaged-data" {
			t.Errorf("GET a damaged document: %d %s, want 409 damaged-data", code, body)
		}
		if strings.Contains(body, "memo") || strings.Contains(body, "plaintext") || strings.Contains(body, "content_sealed") {
			t.Errorf("a damaged document's problem carries text or internals: %s", body)
		}
	}
	if code, m, _ := a.do("T1-alice", "GET", "/v1/documents/"+intact, nil); code != 200 || m["content"] != "zebra migration intact memo" {
		t.Errorf("the intact document: %d %v", code, m)
	}
	// Retrieval leaves the damaged chunks out and answers with the intact one.
	code, m, body := a.do("T1-alice", "POST", "/v1/query", map[string]any{"query": "zebra migration memo", "k": 10})
	if code != 200 {
		t.Fatalf("query over damaged chunks: %d %s", code, body)
	}
	if !strings.Contains(body, "intact memo") || strings.Contains(body, "copied memo") || strings.Contains(body, "plaintext planted") {
		t.Errorf("query: want the intact passage only: %v", m)
	}
	// A tampered agent secret: its owner's direct read is the same problem.
	code, m, body = a.do("T1-alice", "POST", "/v1/agents", map[string]any{"name": "writer", "system_prompt": "be brief", "secrets": map[string]string{"k": "v"}})
	if code != 201 {
		t.Fatalf("create agent: %d %s", code, body)
	}
	agent := m["id"].(string)
	exec(`UPDATE bulkhead.agents SET system_prompt = (SELECT system_prompt FROM bulkhead.agents WHERE id <> $1 AND system_prompt IS NOT NULL LIMIT 1) WHERE id = $1`, agent)
	if code, m, body := a.do("T1-alice", "GET", "/v1/agents/"+agent, nil); code != http.StatusConflict || m["type"] != "https://bulkhead.dev/problems/damaged-data" {
		t.Errorf("GET an agent with a tampered prompt: %d %s", code, body)
	}

	// Each damaged value read is in the tenant's audit log and counted.
	var n int
	if err := su.QueryRow(ctx, `SELECT count(*) FROM bulkhead.audit_log WHERE tenant_id = $1 AND action = 'damaged_value' AND actor_id = $2`, a.demo.T1.Tenant.ID, a.demo.T1.Alice).Scan(&n); err != nil || n < 5 {
		t.Errorf("audit_log has %d damaged_value entries (%v), want at least 5 (2 documents, 2 chunks, 1 agent)", n, err)
	}
	resp, err := http.Get(a.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bulkhead_damaged_values_total{column="content_sealed",table="documents"} 2`,
		`bulkhead_damaged_values_total{column="system_prompt",table="agents"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(string(metrics), `bulkhead_damaged_values_total{column="content_sealed",table="chunks"}`) {
		t.Error("/metrics lacks the chunks counter")
	}
}
