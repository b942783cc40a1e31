package httpapi_test

import (
	"testing"
)

// TestRemainingResourcesAreIsolated covers, over HTTP, the resources the
// main isolation test does not: entities, delegations, message servers and
// participant writes. Owner side first, then everyone else.
func TestRemainingResourcesAreIsolated(t *testing.T) {
	a := newAPI(t)
	t1 := a.demo.T1
	// Entities: the directory is tenant-wide, invisible to other tenants.
	if code, _, _ := a.do("T1-charlie", "GET", "/v1/entities/"+t1.Alice.String(), nil); code != 200 {
		t.Errorf("T1 Charlie reads Alice's directory entry: %d", code)
	}
	if code, _, _ := a.do("T2-alice", "GET", "/v1/entities/"+t1.Alice.String(), nil); code != 404 {
		t.Errorf("T2 reads T1's entity: %d, want 404", code)
	}
	// Delegations: the principal grants and sees; others neither see nor revoke.
	code, d, body := a.do("T1-bob", "POST", "/v1/delegations", map[string]any{"agent_id": t1.Agent.String()})
	if code != 201 {
		t.Fatalf("Bob delegates to Alice's agent: %d %s", code, body)
	}
	id := d["id"].(string)
	for _, tok := range []string{"T1-charlie", "T2-bob"} {
		if code, _, _ := a.do(tok, "DELETE", "/v1/delegations/"+id, nil); code != 404 {
			t.Errorf("%s revokes Bob's delegation: %d, want 404", tok, code)
		}
		_, m, _ := a.do(tok, "GET", "/v1/delegations", nil)
		for _, it := range m["items"].([]any) {
			if it.(map[string]any)["id"] == id {
				t.Errorf("%s lists Bob's delegation", tok)
			}
		}
	}
	if code, _, _ := a.do("T1-bob", "DELETE", "/v1/delegations/"+id, nil); code != 204 {
		t.Errorf("Bob revokes his delegation: %d", code)
	}
	// Message servers: the owner links agents; others can't, and can't read the links.
	srv := "/v1/message-servers/" + t1.Server.String() + "/agents"
	if code, m, _ := a.do("T1-alice", "GET", srv, nil); code != 200 || len(m["items"].([]any)) != 1 {
		t.Errorf("Alice lists her server's agents: %d %v", code, m)
	}
	if code, m, _ := a.do("T2-alice", "GET", srv, nil); code != 200 || len(m["items"].([]any)) != 0 {
		t.Errorf("T2 lists T1's server's agents: %d %v, want none", code, m)
	}
	if code, _, _ := a.do("T1-bob", "POST", srv, map[string]any{"agent_id": t1.Agent.String()}); code != 403 && code != 409 {
		t.Errorf("Bob links an agent to Alice's server: %d, want a refusal", code)
	}
	if code, _, _ := a.do("T1-bob", "DELETE", srv+"/"+t1.Agent.String(), nil); code != 404 {
		t.Errorf("Bob unlinks from Alice's server: %d, want 404", code)
	}
	// Participants: a member can't add, another tenant can't add or remove.
	room := "/v1/rooms/" + t1.Room1.String() + "/participants"
	if code, _, _ := a.do("T1-bob", "POST", room, map[string]any{"entity_id": t1.Charlie.String()}); code != 403 {
		t.Errorf("member Bob adds Charlie: %d, want 403", code)
	}
	if code, _, _ := a.do("T2-alice", "DELETE", room+"/"+t1.Bob.String(), nil); code != 404 {
		t.Errorf("T2 removes T1's participant: %d, want 404", code)
	}
	if code, _, _ := a.do("T1-alice", "POST", room, map[string]any{"entity_id": t1.Charlie.String()}); code != 204 {
		t.Errorf("owner Alice adds Charlie: %d", code)
	}
	// Documents: only the owner deletes.
	if code, _, _ := a.do("T1-bob", "DELETE", "/v1/documents/"+t1.TenantDoc.String(), nil); code != 204 {
		t.Errorf("Bob deletes his own tenant-wide doc: %d", code)
	}
	if code, _, _ := a.do("T1-bob", "DELETE", "/v1/documents/"+t1.RoomDoc.String(), nil); code != 404 {
		t.Errorf("Bob deletes Alice's room doc: %d, want 404", code)
	}
}
