package httpapi_test

import (
	"strings"
	"testing"
)

// TestKnowledgeOverHTTP: query and answer see what the caller sees; bad
// input is a 400 problem; a vector backend that is down is a 503 problem
// with no internals, never an empty 200.
func TestKnowledgeOverHTTP(t *testing.T) {
	t.Parallel()
	a := newAPI(t)
	t1 := a.demo.T1
	// Charlie is not in room1: the room handbook is Alice's and Bob's.
	for _, c := range []struct {
		token string
		want  bool
	}{{"T1-alice", true}, {"T1-bob", true}, {"T1-charlie", false}, {"T2-alice", false}} {
		code, m, raw := a.do(c.token, "POST", "/v1/query", map[string]any{"query": "room1 handbook", "k": 5})
		if code != 200 || m["passages"] == nil {
			t.Fatalf("%s query: %d %s", c.token, code, raw)
		}
		if got := strings.Contains(raw, t1.RoomDoc.String()); got != c.want {
			t.Errorf("%s retrieves T1's room handbook: %v, want %v (%s)", c.token, got, c.want, raw)
		}
	}
	code, m, raw := a.do("T1-charlie", "POST", "/v1/answer", map[string]any{"query": "room1 handbook"})
	if code != 200 || strings.Contains(raw, "room1 handbook (T1)") || m["answer"] == "" {
		t.Errorf("Charlie's answer: %d %s", code, raw)
	}
	for _, body := range []any{map[string]any{"query": ""}, map[string]any{"query": "x", "k": 1000}, map[string]any{"query": "x", "collection": "T2"}} {
		if code, _, raw := a.do("T1-alice", "POST", "/v1/query", body); code != 400 || !strings.Contains(raw, "problem") && !strings.Contains(raw, "invalid") {
			t.Errorf("bad query %v: %d %s", body, code, raw)
		}
	}
	// The backend goes away: 503, a problem body, nothing internal.
	a.know.Store.Close()
	for _, ep := range []string{"/v1/query", "/v1/answer"} {
		code, _, raw := a.do("T1-alice", "POST", ep, map[string]any{"query": "room1 handbook"})
		if code != 503 || !strings.Contains(raw, "unavailable") || strings.Contains(raw, "vector") || strings.Contains(raw, "embedded") {
			t.Errorf("%s with the backend down: %d %s", ep, code, raw)
		}
	}
	if code, _, raw := a.do("T1-alice", "POST", "/v1/documents", map[string]any{"title": "t", "content": "c"}); code != 503 {
		t.Errorf("ingest with the backend down: %d %s", code, raw)
	}
}
