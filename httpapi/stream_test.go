package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/httpapi"
	"github.com/bulkhead-dev/bulkhead/internal/syncbuf"
	"github.com/bulkhead-dev/bulkhead/internal/testdb"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// streamWait bounds every wait for something that must happen.
const streamWait = 5 * time.Second

const appOrigin = "https://app.example.test"

// streamEnv is a server with the demo fixture, the tests' tokens
// ("T1-alice", ...) unless another authenticator is given, and appOrigin
// allowed.
type streamEnv struct {
	*api
	db *postgres.DB
}

// newStreamEnv starts the server; configure, if given, adjusts its
// http.Server first.
func newStreamEnv(t *testing.T, so httpapi.StreamOptions, authn httpapi.Authenticator, configure ...func(*http.Server)) *streamEnv {
	t.Helper()
	d := testdb.New(t)
	demo, err := postgres.SeedDemo(bulkhead.AsMaintenance(context.Background(), "test"), d.DB, "")
	if err != nil {
		t.Fatal(err)
	}
	if authn == nil {
		tk := tokens{}
		for _, tn := range []postgres.DemoTenant{demo.T1, demo.T2} {
			tk[tn.Tenant.Name+"-alice"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Alice}
			tk[tn.Tenant.Name+"-bob"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Bob}
			tk[tn.Tenant.Name+"-charlie"] = bulkhead.Scope{Tenant: tn.Tenant.ID, Entity: tn.Charlie}
		}
		authn = tk
	}
	so.Origins = append(so.Origins, appOrigin)
	if so.Notifier == nil && testdb.ThroughPgBouncer() {
		// As in serve: LISTEN through PgBouncer in transaction mode hears
		// nothing, so the notifier connects directly as the same role.
		direct, err := pgx.ParseConfig(d.AppDSN())
		if err != nil {
			t.Fatal(err)
		}
		so.Notifier = postgres.NewNotifier(d.DB, postgres.NotifierConfig{ConnConfig: direct})
		t.Cleanup(so.Notifier.Close)
	}
	logs := &syncbuf.Buffer{}
	s := httpapi.NewServer(d.DB, slog.New(slog.NewJSONHandler(logs, nil)), nil, httpapi.Options{Auth: authn, Stream: so})
	srv := httptest.NewUnstartedServer(s)
	for _, f := range configure {
		f(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	t.Cleanup(s.CloseStreams) // runs before srv.Close
	return &streamEnv{api: &api{t: t, srv: srv, demo: demo, logs: logs}, db: d.DB}
}

func streamPath(room uuid.UUID) string { return "/v1/rooms/" + room.String() + "/stream" }

// dial opens room's stream with a header token and/or a ticket and Origin
// (each omitted when "").
func (e *streamEnv) dial(room uuid.UUID, token, ticket, origin string) (*websocket.Conn, *http.Response, error) {
	u := "ws" + strings.TrimPrefix(e.srv.URL, "http") + streamPath(room)
	if ticket != "" {
		u += "?ticket=" + url.QueryEscape(ticket)
	}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	if origin != "" {
		h.Set("Origin", origin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: h})
	if c != nil {
		e.t.Cleanup(func() { c.CloseNow() })
	}
	return c, resp, err
}

func (e *streamEnv) mustDial(room uuid.UUID, token, ticket, origin string) *websocket.Conn {
	e.t.Helper()
	c, resp, err := e.dial(room, token, ticket, origin)
	if err != nil {
		code := 0
		if resp != nil {
			code = resp.StatusCode
		}
		e.t.Fatalf("dial %s as %q (ticket %v, origin %q): %d %v", streamPath(room), token, ticket != "", origin, code, err)
	}
	return c
}

// refused dials and expects an HTTP refusal with status want: a problem,
// and no upgrade.
func (e *streamEnv) refused(what string, want int, room uuid.UUID, token, ticket, origin string) {
	e.t.Helper()
	c, resp, err := e.dial(room, token, ticket, origin)
	if err == nil {
		c.CloseNow()
		e.t.Errorf("%s: upgraded, want %d", what, want)
		return
	}
	if resp == nil {
		e.t.Errorf("%s: no HTTP response: %v", what, err)
		return
	}
	if resp.StatusCode != want || resp.Header.Get("Content-Type") != "application/problem+json" || resp.Header.Get("Sec-WebSocket-Accept") != "" {
		e.t.Errorf("%s: %d %q (accept %q), want %d problem+json without an upgrade", what, resp.StatusCode,
			resp.Header.Get("Content-Type"), resp.Header.Get("Sec-WebSocket-Accept"), want)
	}
}

// next reads the next message as a memory (failing after streamWait).
func next(t *testing.T, c *websocket.Conn) bulkhead.Memory {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	typ, b, err := c.Read(ctx)
	if err != nil {
		t.Fatalf("read from the stream: %v", err)
	}
	var m bulkhead.Memory
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); typ != websocket.MessageText || err != nil {
		t.Fatalf("stream message %q (type %v): %v", b, typ, err)
	}
	return m
}

// expectClose reads until the server closes the stream and checks its code;
// any message received first is an error.
func expectClose(t *testing.T, c *websocket.Conn, want websocket.StatusCode) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()
	for {
		_, b, err := c.Read(ctx)
		if err == nil {
			t.Errorf("received %s while waiting for the close", b)
			continue
		}
		if got := websocket.CloseStatus(err); got != want {
			t.Errorf("stream ended with %v (%v), want close %v", got, err, want)
		}
		return
	}
}

// post posts content into room as token through the API and returns the
// created memory as the API returned it.
func (e *streamEnv) post(token string, room uuid.UUID, content string) bulkhead.Memory {
	e.t.Helper()
	code, _, body := e.do(token, "POST", "/v1/rooms/"+room.String()+"/messages", map[string]any{"content": content})
	if code != 201 {
		e.t.Fatalf("%s posts into %s: %d %s", token, room, code, body)
	}
	var m bulkhead.Memory
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

// ticket asks for a stream ticket as token.
func (e *streamEnv) ticket(token string, room uuid.UUID) string {
	e.t.Helper()
	code, m, body := e.do(token, "POST", "/v1/stream-tickets", map[string]any{"room_id": room})
	tk, _ := m["ticket"].(string)
	if code != 201 || tk == "" || m["room_id"] != room.String() {
		e.t.Fatalf("%s asks for a ticket to %s: %d %s", token, room, code, body)
	}
	return tk
}

func TestStreamRefusesBeforeUpgrading(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, httpapi.StreamOptions{}, nil)
	t1 := e.demo.T1
	room1 := t1.Room1
	e.refused("no credentials", 401, room1, "", "", "")
	e.refused("unknown token", 401, room1, "forged", "", "")
	e.refused("unknown token from an allowed origin", 401, room1, "forged", "", appOrigin)
	e.refused("foreign origin", 403, room1, "T1-alice", "", "https://evil.example")
	e.refused("allowed host on another scheme", 403, room1, "T1-alice", "", "http://app.example.test")
	e.refused("origin null", 403, room1, "T1-alice", "", "null")
	e.refused("same-tenant non-participant", 404, room1, "T1-charlie", "", "")
	e.refused("other tenant", 404, room1, "T2-alice", "", "")
	e.refused("other tenant's participant, its own room id in the other tenant", 404, e.demo.T2.Room1, "T1-alice", "", "")
	e.refused("no such room", 404, uuid.New(), "T1-alice", "", "")
	if code, _, body := e.do("T1-alice", "GET", streamPath(room1), nil); code != 426 {
		t.Errorf("plain GET without an upgrade: %d %s, want 426", code, body)
	}
	if code, _, _ := e.do("T1-alice", "GET", "/v1/rooms/not-a-uuid/stream", nil); code != 400 {
		t.Errorf("bad room id: %d, want 400", code)
	}
	// A participant gets through, with or without an allowed Origin.
	e.mustDial(room1, "T1-alice", "", "")
	e.mustDial(room1, "T1-bob", "", strings.ToUpper(appOrigin))
	if strings.Contains(e.logs.String(), "T1-alice") {
		t.Error("the logs hold a token")
	}
}

// TestStreamDeliversToParticipantsOnly asserts both sides for every
// message: its room's participants receive it, in its shape; a participant
// of another room and the other tenant's streams don't (each one's next
// message is a later one of its own room, so an earlier foreign one was
// never sent).
func TestStreamDeliversToParticipantsOnly(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, httpapi.StreamOptions{}, nil)
	t1, t2 := e.demo.T1, e.demo.T2
	alice := e.mustDial(t1.Room1, "T1-alice", "", "")
	charlie := e.mustDial(t1.Room2, "T1-charlie", "", "")
	otherAlice := e.mustDial(t2.Room1, "T2-alice", "", "")
	otherBob := e.mustDial(t2.Room1, "T2-bob", "", "")

	// Through the API: the stream sends what the API returned.
	posted := e.post("T1-bob", t1.Room1, "hello from the API")
	if got := next(t, alice); !cmp.Equal(got, posted) {
		t.Errorf("Alice's stream (-posted +streamed):\n%s", cmp.Diff(posted, got))
	}
	// Through the repository, in Bob's scope.
	m, err := e.db.AppendMemory(t1.As(context.Background(), t1.Bob), postgres.NewMemory{RoomID: t1.Room1, Content: "hello from the repository"})
	if err != nil {
		t.Fatal(err)
	}
	if got := next(t, alice); got.ID != m.ID || got.Content != m.Content || got.AuthorID != t1.Bob {
		t.Errorf("Alice's stream got %+v, want %+v", got, m)
	}

	room2 := e.post("T1-bob", t1.Room2, "room2 only")
	if got := next(t, charlie); got.ID != room2.ID {
		t.Errorf("Charlie (room2) got %q first, want room2's message: room1's reached him", got.Content)
	}
	t2msg := e.post("T2-bob", t2.Room1, "T2 only")
	for name, c := range map[string]*websocket.Conn{"T2 Alice": otherAlice, "T2 Bob": otherBob} {
		if got := next(t, c); got.ID != t2msg.ID {
			t.Errorf("%s got %q first, want T2's message: T1's reached T2", name, got.Content)
		}
	}
	last := e.post("T1-bob", t1.Room1, "room1 again")
	if got := next(t, alice); got.ID != last.ID {
		t.Errorf("Alice got %q, want room1's latest: room2's or T2's message reached her", got.Content)
	}
}

func TestStreamTickets(t *testing.T) {
	t.Parallel()
	// The tickets' clock is the test's: expiry is a step of it, not a sleep.
	var skew atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	e := newStreamEnv(t, httpapi.StreamOptions{TicketTTL: 30 * time.Second, Now: clock}, nil)
	t1 := e.demo.T1
	if code, _, _ := e.do("", "POST", "/v1/stream-tickets", map[string]any{"room_id": t1.Room1}); code != 401 {
		t.Errorf("ticket without credentials: %d, want 401", code)
	}
	if code, _, _ := e.do("T1-charlie", "POST", "/v1/stream-tickets", map[string]any{"room_id": t1.Room1}); code != 404 {
		t.Errorf("ticket for a room Charlie is not in: %d, want 404", code)
	}
	if code, _, _ := e.do("T2-alice", "POST", "/v1/stream-tickets", map[string]any{"room_id": t1.Room1}); code != 404 {
		t.Errorf("ticket for the other tenant's room: %d, want 404", code)
	}
	if code, _, _ := e.do("T1-alice", "POST", "/v1/stream-tickets", map[string]any{}); code != 400 {
		t.Errorf("ticket without a room: %d, want 400", code)
	}

	// A browser: no header, the allowed Origin, the ticket. It is Alice's.
	tk := e.ticket("T1-alice", t1.Room1)
	c := e.mustDial(t1.Room1, "", tk, appOrigin)
	posted := e.post("T1-bob", t1.Room1, "for the browser")
	if got := next(t, c); got.ID != posted.ID {
		t.Errorf("ticket stream got %+v", got)
	}
	e.refused("a used ticket", 401, t1.Room1, "", tk, appOrigin)

	// Every failed use burns the ticket.
	tk = e.ticket("T1-bob", t1.Room1)
	e.refused("a room1 ticket on room2", 401, t1.Room2, "", tk, appOrigin)
	e.refused("the same ticket on its room after a failed use", 401, t1.Room1, "", tk, appOrigin)
	tk = e.ticket("T1-bob", t1.Room1)
	e.refused("a ticket from a foreign origin", 403, t1.Room1, "", tk, "https://evil.example")
	e.refused("the same ticket after the foreign origin", 401, t1.Room1, "", tk, appOrigin)
	tk = e.ticket("T1-bob", t1.Room1)
	e.refused("a ticket without an Origin (not a browser)", 403, t1.Room1, "", tk, "")
	tk = e.ticket("T1-bob", t1.Room1)
	e.refused("a ticket with a header token too", 401, t1.Room1, "T1-bob", tk, appOrigin)
	e.refused("a made-up ticket", 401, t1.Room1, "", "bm90LWEtdGlja2V0", appOrigin)
	tk = e.ticket("T1-bob", t1.Room1)
	if code, _, _ := e.do("", "GET", "/v1/rooms?ticket="+url.QueryEscape(tk), nil); code != 401 {
		t.Errorf("a ticket on another route: %d, want 401", code)
	}

	tk = e.ticket("T1-alice", t1.Room1)
	skew.Store(int64(30 * time.Second))
	e.refused("an expired ticket", 401, t1.Room1, "", tk, appOrigin)
	// One tick before the end it still opens.
	skew.Store(0)
	tk = e.ticket("T1-alice", t1.Room1)
	skew.Store(int64(29 * time.Second))
	if c, _, err := e.dial(t1.Room1, "", tk, appOrigin); err != nil {
		t.Errorf("a ticket 29 s into its 30: %v", err)
	} else {
		c.CloseNow()
	}
}

func TestStreamConnectionCap(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, httpapi.StreamOptions{MaxConnsPerEntity: 2}, nil)
	t1 := e.demo.T1
	first := e.mustDial(t1.Room1, "T1-alice", "", "")
	e.mustDial(t1.Room1, "T1-alice", "", "")
	_, resp, err := e.dial(t1.Room1, "T1-alice", "", "")
	if err == nil || resp == nil || resp.StatusCode != 429 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("third stream: %v %v, want 429 with Retry-After", resp, err)
	}
	e.mustDial(t1.Room1, "T1-bob", "", "") // per entity: Bob is not limited by Alice
	first.Close(websocket.StatusNormalClosure, "")
	for start := time.Now(); ; time.Sleep(20 * time.Millisecond) {
		c, resp, err := e.dial(t1.Room1, "T1-alice", "", "")
		if err == nil {
			c.CloseNow()
			break
		}
		if resp == nil || resp.StatusCode != 429 || time.Since(start) > streamWait {
			t.Fatalf("after closing one: %v %v", resp, err)
		}
	}
}

func TestStreamClosesWhenAccessIsRevoked(t *testing.T) {
	t.Parallel()
	t.Run("on the next message", func(t *testing.T) {
		t.Parallel()
		e := newStreamEnv(t, httpapi.StreamOptions{Recheck: time.Hour}, nil)
		t1 := e.demo.T1
		bob := e.mustDial(t1.Room1, "T1-bob", "", "")
		if code, _, body := e.do("T1-alice", "DELETE", "/v1/rooms/"+t1.Room1.String()+"/participants/"+t1.Bob.String(), nil); code != 204 {
			t.Fatalf("Alice removes Bob from room1: %d %s", code, body)
		}
		e.post("T1-alice", t1.Room1, "after Bob left")
		expectClose(t, bob, websocket.StatusPolicyViolation) // and the message never came
	})
	t.Run("on the periodic check", func(t *testing.T) {
		t.Parallel()
		e := newStreamEnv(t, httpapi.StreamOptions{Recheck: 100 * time.Millisecond}, nil)
		t1 := e.demo.T1
		charlie := e.mustDial(t1.Room2, "T1-charlie", "", "")
		if code, _, body := e.do("T1-bob", "DELETE", "/v1/rooms/"+t1.Room2.String()+"/participants/"+t1.Charlie.String(), nil); code != 204 {
			t.Fatalf("Bob removes Charlie from room2: %d %s", code, body)
		}
		expectClose(t, charlie, websocket.StatusPolicyViolation)
	})
}

// TestStreamClosesWhenTheTokenExpires uses the real JWT authenticator: a
// stream (by header token or by a ticket) ends at its token's exp, while a
// stream with a longer-lived token goes on.
func TestStreamClosesWhenTheTokenExpires(t *testing.T) {
	t.Parallel()
	const issuer, secret = "https://bulkhead.test", "a-test-hs256-secret-of-32-bytes!"
	v, err := auth.NewVerifier(context.Background(), []auth.IssuerConfig{{Issuer: issuer, Secret: bulkhead.Secret(secret), Audience: "bulkhead", TenantClaim: "tid"}}, auth.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	e := newStreamEnv(t, httpapi.StreamOptions{}, auth.NewAuthenticator(v, issuer))
	t1 := e.demo.T1
	mint := func(entity uuid.UUID, exp time.Time) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"iss": issuer, "sub": entity.String(), "aud": "bulkhead",
			"iat": time.Now().Unix(), "exp": exp.Unix(), "tid": t1.Tenant.ID.String()}).SignedString([]byte(secret))
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	short := mint(t1.Alice, time.Now().Add(2*time.Second))
	long := mint(t1.Bob, time.Now().Add(time.Hour))

	// Past its exp but inside the verifier's leeway: no stream.
	e.refused("an expired token inside the leeway", 401, t1.Room1, mint(t1.Alice, time.Now().Add(-5*time.Second)), "", "")

	byHeader := e.mustDial(t1.Room1, short, "", "")
	byTicket := e.mustDial(t1.Room1, "", e.ticket(short, t1.Room1), appOrigin)
	bob := e.mustDial(t1.Room1, long, "", "")
	posted := e.post(long, t1.Room1, "before the expiry")
	for _, c := range []*websocket.Conn{byHeader, byTicket, bob} {
		if got := next(t, c); got.ID != posted.ID {
			t.Errorf("before the expiry got %+v", got)
		}
	}
	expectClose(t, byHeader, websocket.StatusPolicyViolation)
	expectClose(t, byTicket, websocket.StatusPolicyViolation)
	after := e.post(long, t1.Room1, "after the expiry")
	if got := next(t, bob); got.ID != after.ID {
		t.Errorf("Bob's stream after Alice's token expired got %+v", got)
	}
}

func TestStreamReadLimits(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, httpapi.StreamOptions{ReadLimit: 1 << 10}, nil)
	t1 := e.demo.T1
	ctx, cancel := context.WithTimeout(context.Background(), streamWait)
	defer cancel()

	c := e.mustDial(t1.Room1, "T1-alice", "", "")
	// Small messages are ignored, and pings answered.
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	posted := e.post("T1-bob", t1.Room1, "still open")
	if got := next(t, c); got.ID != posted.ID {
		t.Errorf("after a small client message got %+v", got)
	}
	pingDone := make(chan error, 1)
	go func() { pingDone <- c.Ping(ctx) }()
	// A concurrent reader processes the pong; nothing else arrives.
	readCtx, readCancel := context.WithCancel(ctx)
	go func() { c.Read(readCtx) }()
	if err := <-pingDone; err != nil {
		t.Errorf("ping: %v", err)
	}
	readCancel()

	c = e.mustDial(t1.Room1, "T1-alice", "", "")
	if err := c.Write(ctx, websocket.MessageText, bytes.Repeat([]byte("x"), 2<<10)); err != nil && !errors.Is(err, io.EOF) {
		t.Logf("oversized write: %v", err)
	}
	expectClose(t, c, websocket.StatusMessageTooBig)

	c = e.mustDial(t1.Room1, "T1-alice", "", "")
	for range 12 {
		if err := c.Write(ctx, websocket.MessageText, []byte("spam")); err != nil {
			break
		}
	}
	expectClose(t, c, websocket.StatusPolicyViolation)
}

// TestStreamOutlivesServerTimeouts: the server's read and write timeouts
// (bulkhead serve sets both) must not end an upgraded stream. net/http
// clears the connection's deadlines when it is hijacked; this keeps it so.
func TestStreamOutlivesServerTimeouts(t *testing.T) {
	t.Parallel()
	e := newStreamEnv(t, httpapi.StreamOptions{}, nil, func(s *http.Server) {
		// Long enough for a handshake on a loaded machine (under -race).
		s.ReadTimeout, s.WriteTimeout = 2*time.Second, 2*time.Second
	})
	t1 := e.demo.T1
	c := e.mustDial(t1.Room1, "T1-alice", "", "")
	time.Sleep(2500 * time.Millisecond) // past both timeouts
	posted := e.post("T1-bob", t1.Room1, "after the timeouts")
	if got := next(t, c); got.ID != posted.ID {
		t.Errorf("after the server's timeouts got %+v", got)
	}
}
