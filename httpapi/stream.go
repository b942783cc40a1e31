package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/google/uuid"
	"golang.org/x/time/rate"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
)

// The room stream: GET /v1/rooms/{id}/stream upgrades to a WebSocket that
// carries each new memory of the room, as JSON in the shape of
// bulkhead.Memory, to participants only.
//
// Before the upgrade, in this order (each refusal is problem+json, never a
// 101): authentication by the authenticated middleware, with a header token
// or, on this route only, a single-use ticket (?ticket=, from POST
// /v1/stream-tickets) because browsers can't set headers on a WebSocket;
// the Origin against StreamOptions.Origins (403; a request without Origin
// is not a browser and must use a header token); the upgrade headers
// (426); the credential's expiry (401 once past, even inside the
// verifier's leeway); participation in the room, in the caller's scope (404, as for
// every hidden row); the per-entity connection cap (429); the
// subscription to the room's notifications (503 if PostgreSQL can't be
// listened to).
//
// After it: each notification (ids only) is turned into content by reading
// the memory in the caller's scope, so row-level security decides what is
// sent; a memory the caller can't read triggers a participation check.
// Participation is also re-checked every StreamOptions.Recheck, and every
// read (notification or re-check) checks the credential again
// (postgres.Access). The stream closes with 1008 (policy violation) when
// the credential expires or is revoked (its session, key, entity or
// tenant), or the caller no longer participates, 1009 when a client message exceeds
// ReadLimit, 1008 when the client sends more than a message a second
// (bursts of 10), 1012 when notifications may have been missed (the
// client reloads the history and reconnects), 1001 at MaxLifetime for a
// credential without a known expiry, and 1011 on a database error.

// streamPattern is the stream's route; tickets are accepted on it only.
const streamPattern = "GET /v1/rooms/{id}/stream"

// ExpiringAuthenticator is implemented by authenticators that know when a
// credential expires (auth.Authenticator: a JWT's exp). The stream closes at
// that instant; a credential without a known expiry (the zero time, or an
// Authenticator without this method) is bounded by
// StreamOptions.MaxLifetime instead.
type ExpiringAuthenticator interface {
	AuthenticateWithExpiry(r *http.Request) (bulkhead.Scope, time.Time, error)
}

// StreamOptions configures the room stream. The zero value gives the
// defaults and admits no browser.
type StreamOptions struct {
	// Origins are the browser origins allowed to open a stream, as
	// scheme://host[:port] ("https://app.example.com"), compared exactly
	// (case-insensitively). Any other Origin is refused (403) before the
	// upgrade. Entries that are not such an origin are logged and ignored.
	Origins []string
	// MaxConnsPerEntity caps the live streams of one (tenant, entity) on
	// this process (429 beyond it): 8 if zero.
	MaxConnsPerEntity int
	// ReadLimit is the largest client message in bytes (clients only send
	// pings and close): a larger one closes the stream with 1009. 4 KiB if
	// zero.
	ReadLimit int64
	// Recheck is how often a stream re-checks that the caller still
	// participates in the room: 10 s if zero.
	Recheck time.Duration
	// TicketTTL is how long a ticket is valid: 30 s if zero. Tickets live in
	// this process's memory: behind several processes, a ticket must be
	// used on the process that issued it (sticky routing), or clients use a
	// header token.
	TicketTTL time.Duration
	// Now is the clock tickets are issued and checked by. Nil: time.Now.
	// For tests.
	Now func() time.Time
	// MaxLifetime bounds a stream whose credential has no known expiry: 1
	// hour if zero.
	MaxLifetime time.Duration
	// Notifier delivers the room notifications. Nil: one over the runtime
	// pool's connection settings, which must reach PostgreSQL directly, not
	// through PgBouncer in transaction mode (LISTEN doesn't work there).
	Notifier *postgres.Notifier
}

// streams is the server's stream state: tickets, connection counts, the
// notifier and the live streams (for CloseStreams).
type streams struct {
	db          *postgres.DB
	log         *slog.Logger
	notifier    *postgres.Notifier
	ownNotifier bool
	origins     map[string]bool
	maxConns    int
	readLimit   int64
	recheck     time.Duration
	maxLifetime time.Duration
	tickets     *tickets
	closing     chan struct{}
	closeOnce   sync.Once

	mu    sync.Mutex
	conns map[string]int // live streams by tenant/entity
}

func newStreams(db *postgres.DB, log *slog.Logger, o StreamOptions) *streams {
	st := &streams{db: db, log: log, notifier: o.Notifier, origins: map[string]bool{}, maxConns: o.MaxConnsPerEntity,
		readLimit: o.ReadLimit, recheck: o.Recheck, maxLifetime: o.MaxLifetime, closing: make(chan struct{}), conns: map[string]int{}}
	if st.notifier == nil {
		st.notifier, st.ownNotifier = postgres.NewNotifier(db, postgres.NotifierConfig{Logger: log}), true
	}
	if st.maxConns <= 0 {
		st.maxConns = 8
	}
	if st.readLimit <= 0 {
		st.readLimit = 4 << 10
	}
	if st.recheck <= 0 {
		st.recheck = 10 * time.Second
	}
	if st.maxLifetime <= 0 {
		st.maxLifetime = time.Hour
	}
	ttl := o.TicketTTL
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	now := o.Now
	if now == nil {
		now = time.Now
	}
	st.tickets = &tickets{ttl: ttl, now: now, m: map[[32]byte]ticket{}, perEntity: map[string]int{}}
	for _, o := range o.Origins {
		n, ok := normalOrigin(o)
		if !ok {
			log.Error("stream: ignoring an allowed origin that is not scheme://host[:port]", "origin", o)
			continue
		}
		st.origins[n] = true
	}
	return st
}

// normalOrigin returns o as lower-case scheme://host[:port], and whether it
// is one (http or https, a host, nothing else).
func normalOrigin(o string) (string, bool) {
	u, err := url.Parse(strings.ToLower(strings.TrimSpace(o)))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return "", false
	}
	return u.Scheme + "://" + u.Host, true
}

// CloseStreams closes every live stream with 1001 (going away) and, if the
// server made its own notifier, that notifier's connection. Call it when
// shutting down: http.Server.Shutdown does not close upgraded connections.
func (s *Server) CloseStreams() {
	s.stream.closeOnce.Do(func() {
		close(s.stream.closing)
		if s.stream.ownNotifier {
			s.stream.notifier.Close()
		}
	})
}

// expiryKey carries the credential's expiry from the authenticated
// middleware to the handlers (part of the request's identity).
type expiryKey struct{}

func withExpiry(ctx context.Context, exp time.Time) context.Context {
	if exp.IsZero() {
		return ctx
	}
	return context.WithValue(ctx, expiryKey{}, exp)
}

func expiryFrom(ctx context.Context) time.Time {
	exp, _ := ctx.Value(expiryKey{}).(time.Time)
	return exp
}

// ticketPattern is the route that issues tickets.
const ticketPattern = "POST /v1/stream-tickets"

// authResult is who authenticated and with what: the scope, the
// credential's expiry (zero: unknown) and what the revocation check needs.
type authResult struct {
	scope  bulkhead.Scope
	exp    time.Time
	access postgres.Access
}

// authenticate is the authenticated middleware's credential check: the
// configured Authenticator or, on the stream route only, a ticket (which
// carries the scope, expiry and access of the credential that asked for
// it). An AccessAuthenticator also describes the credential for the
// revocation check; any other Authenticator gets the zero Access (the
// tenant and entity must exist and be enabled). The two stream routes also
// ask an ExpiringAuthenticator for the credential's expiry (others don't
// need it, and it may cost a second verification).
func (s *Server) authenticate(r *http.Request) (authResult, error) {
	if r.Pattern == streamPattern && r.URL.Query().Has("ticket") {
		if r.Header.Get("Authorization") != "" || r.Header.Get("X-API-Key") != "" {
			return authResult{}, ticketRefused("both a ticket and a header credential")
		}
		room, err := pathID(r, "id")
		if err != nil {
			return authResult{}, ticketRefused("bad room id")
		}
		return s.stream.tickets.consume(r.URL.Query().Get("ticket"), room)
	}
	if aa, ok := s.auth.(AccessAuthenticator); ok {
		sc, exp, acc, err := aa.AuthenticateAccess(r)
		return authResult{scope: sc, exp: exp, access: acc}, err
	}
	if ea, ok := s.auth.(ExpiringAuthenticator); ok && (r.Pattern == streamPattern || r.Pattern == ticketPattern) {
		sc, exp, err := ea.AuthenticateWithExpiry(r)
		return authResult{scope: sc, exp: exp}, err
	}
	sc, err := s.auth.Authenticate(r)
	return authResult{scope: sc}, err
}

// ticketError is a refused ticket (401; reason "ticket" in the metrics).
type ticketError struct{ detail string }

func (e ticketError) Error() string  { return "stream ticket refused: " + e.detail }
func (e ticketError) Unwrap() error  { return bulkhead.ErrUnauthenticated }
func (e ticketError) Reason() string { return "ticket" }

func ticketRefused(detail string) error { return ticketError{detail} }

// maxTicketsPerEntity bounds the unexpired tickets of one entity.
const maxTicketsPerEntity = 32

// tickets are single-use stream credentials for browsers, kept in memory
// by the SHA-256 of their value (the value itself is never stored or
// logged).
type tickets struct {
	ttl       time.Duration
	now       func() time.Time
	mu        sync.Mutex
	m         map[[32]byte]ticket
	perEntity map[string]int
}

type ticket struct {
	scope    bulkhead.Scope
	access   postgres.Access // the credential's that asked for it, checked again on use
	room     uuid.UUID
	expires  time.Time // the ticket's
	tokenExp time.Time // the credential's that asked for it (zero: unknown)
}

// issue returns a new ticket for sc and room, valid for the TTL (never
// beyond the credential's expiry). It returns errRateLimited when the
// entity already holds maxTicketsPerEntity.
func (tk *tickets) issue(sc bulkhead.Scope, acc postgres.Access, room uuid.UUID, tokenExp time.Time) (string, time.Time, error) {
	var raw [32]byte
	rand.Read(raw[:])
	value := base64.RawURLEncoding.EncodeToString(raw[:])
	now := tk.now()
	exp := now.Add(tk.ttl)
	if !tokenExp.IsZero() && tokenExp.Before(exp) {
		exp = tokenExp
	}
	who := entityKey(sc)
	tk.mu.Lock()
	defer tk.mu.Unlock()
	for h, t := range tk.m {
		if !now.Before(t.expires) {
			tk.forgetLocked(h, t)
		}
	}
	if tk.perEntity[who] >= maxTicketsPerEntity {
		return "", time.Time{}, errRateLimited{tk.ttl}
	}
	tk.m[sha256.Sum256([]byte(value))] = ticket{scope: sc, access: acc, room: room, expires: exp, tokenExp: tokenExp}
	tk.perEntity[who]++
	return value, exp, nil
}

// consume spends a ticket: whatever the outcome, it can't be used again.
func (tk *tickets) consume(value string, room uuid.UUID) (authResult, error) {
	h := sha256.Sum256([]byte(value))
	tk.mu.Lock()
	t, ok := tk.m[h]
	if ok {
		tk.forgetLocked(h, t)
	}
	tk.mu.Unlock()
	switch {
	case !ok:
		return authResult{}, ticketRefused("unknown or already used")
	case !tk.now().Before(t.expires):
		return authResult{}, ticketRefused("expired")
	case t.room != room:
		return authResult{}, ticketRefused("issued for another room")
	}
	return authResult{scope: t.scope, exp: t.tokenExp, access: t.access}, nil
}

func (tk *tickets) forgetLocked(h [32]byte, t ticket) {
	delete(tk.m, h)
	who := entityKey(t.scope)
	if tk.perEntity[who]--; tk.perEntity[who] <= 0 {
		delete(tk.perEntity, who)
	}
}

func entityKey(sc bulkhead.Scope) string { return sc.Tenant.String() + "/" + sc.Entity.String() }

type (
	ticketInput struct {
		RoomID uuid.UUID `json:"room_id" openapi:"required"`
	}
	streamTicket struct {
		Ticket    string    `json:"ticket"`
		RoomID    uuid.UUID `json:"room_id"`
		ExpiresAt time.Time `json:"expires_at"`
	}
)

// createStreamTicket issues a ticket for a room the caller participates in
// (404 otherwise, as for any hidden room).
func (s *Server) createStreamTicket(w http.ResponseWriter, r *http.Request) error {
	var in ticketInput
	if err := decode(w, r, s.maxBody, &in); err != nil {
		return err
	}
	if in.RoomID == uuid.Nil {
		return bulkhead.Invalid("room_id", "required")
	}
	sc, _ := bulkhead.ScopeFrom(r.Context())
	ok, err := s.stream.participates(r.Context(), sc, in.RoomID)
	if err != nil {
		return err
	}
	if !ok {
		return bulkhead.ErrNotFound
	}
	acc, _ := postgres.AccessFrom(r.Context())
	value, exp, err := s.stream.tickets.issue(sc, acc, in.RoomID, expiryFrom(r.Context()))
	var rl errRateLimited
	if errors.As(err, &rl) {
		return s.rateLimited(w, "stream_tickets", rl.retry)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusCreated, streamTicket{Ticket: value, RoomID: in.RoomID, ExpiresAt: exp})
	return nil
}

// participates reports whether the caller (or the principal it acts for,
// which the database honours only under a valid delegation) participates
// in room, as far as the caller's scope can see.
func (st *streams) participates(ctx context.Context, sc bulkhead.Scope, room uuid.UUID) (bool, error) {
	for _, who := range []uuid.UUID{sc.Entity, sc.ActingFor} {
		if who == uuid.Nil {
			continue
		}
		ok, err := st.db.IsRoomParticipant(ctx, room, who)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// acquire takes one of sc's connection slots; release gives it back.
func (st *streams) acquire(sc bulkhead.Scope) (release func(), ok bool) {
	who := entityKey(sc)
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.conns[who] >= st.maxConns {
		return nil, false
	}
	st.conns[who]++
	return func() {
		st.mu.Lock()
		defer st.mu.Unlock()
		if st.conns[who]--; st.conns[who] <= 0 {
			delete(st.conns, who)
		}
	}, true
}

// checkOrigin admits browsers from the allowed origins and, without an
// Origin, only header credentials.
func (st *streams) checkOrigin(r *http.Request, viaTicket bool) error {
	origins := r.Header.Values("Origin")
	switch {
	case len(origins) == 0:
		if viaTicket {
			return fmt.Errorf("%w: a ticket without an Origin", bulkhead.ErrForbidden)
		}
		return nil
	case len(origins) > 1:
		return fmt.Errorf("%w: several Origin headers", bulkhead.ErrForbidden)
	}
	if n, ok := normalOrigin(origins[0]); !ok || !st.origins[n] {
		return fmt.Errorf("%w: origin not allowed", bulkhead.ErrForbidden)
	}
	return nil
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// streamRoom is GET /v1/rooms/{id}/stream.
func (s *Server) streamRoom(w http.ResponseWriter, r *http.Request) error {
	room, err := pathID(r, "id")
	if err != nil {
		return err
	}
	ctx := r.Context()
	sc, _ := bulkhead.ScopeFrom(ctx)
	st := s.stream
	if err := st.checkOrigin(r, r.URL.Query().Has("ticket")); err != nil {
		return err
	}
	if !headerHasToken(r.Header, "Connection", "upgrade") || !headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		writeProblem(w, Problem{Type: "https://bulkhead.dev/problems/upgrade-required", Title: "WebSocket upgrade required", Status: http.StatusUpgradeRequired})
		return nil
	}
	exp := expiryFrom(ctx)
	if !exp.IsZero() && !time.Now().Before(exp) {
		return fmt.Errorf("%w: credential expired", bulkhead.ErrUnauthenticated)
	}
	ok, err := st.participates(ctx, sc, room)
	if err != nil {
		return err
	}
	if !ok {
		return bulkhead.ErrNotFound
	}
	release, ok := st.acquire(sc)
	if !ok {
		return s.rateLimited(w, "stream_connections", time.Second)
	}
	defer release()
	subCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	sub, err := st.notifier.Subscribe(subCtx, sc.Tenant, room)
	cancel()
	if err != nil {
		s.log.WarnContext(ctx, "stream: no live delivery", "err", err)
		writeProblem(w, Problem{Type: "https://bulkhead.dev/problems/stream-unavailable", Title: "Live delivery unavailable", Status: http.StatusServiceUnavailable})
		return nil
	}
	defer sub.Close()
	// The Origin was checked against the allow-list above, more strictly
	// than the library's same-host rule.
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
	if err != nil {
		s.log.InfoContext(ctx, "stream: handshake failed", "err", err) // Accept has answered
		return nil
	}
	st.serve(ctx, c, sub, sc, room, exp)
	return nil
}

// Close reasons: fixed strings, never ids or errors.
const (
	reasonExpired  = "credential expired"
	reasonRevoked  = "no longer a participant"
	reasonAccess   = "credential revoked"
	reasonLifetime = "maximum stream lifetime reached; reconnect"
	reasonLost     = "notifications may have been missed; reload the history and reconnect"
	reasonShutdown = "server shutting down"
	reasonInternal = "internal error"
	reasonChatty   = "too many client messages"
)

// serve runs one upgraded stream until it closes.
func (st *streams) serve(ctx context.Context, c *websocket.Conn, sub *postgres.Subscription, sc bulkhead.Scope, room uuid.UUID, exp time.Time) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer c.CloseNow()
	c.SetReadLimit(st.readLimit)
	clientGone := make(chan struct{})
	go func() {
		defer close(clientGone)
		st.read(ctx, c)
	}()
	code, reason := websocket.StatusPolicyViolation, reasonExpired
	if exp.IsZero() {
		exp, code, reason = time.Now().Add(st.maxLifetime), websocket.StatusGoingAway, reasonLifetime
	}
	expire := time.NewTimer(time.Until(exp))
	defer expire.Stop()
	recheck := time.NewTicker(st.recheck)
	defer recheck.Stop()
	// stillIn closes the stream unless the caller still participates.
	stillIn := func() bool {
		ok, err := st.participates(ctx, sc, room)
		switch {
		case errors.Is(err, bulkhead.ErrUnauthenticated):
			c.Close(websocket.StatusPolicyViolation, reasonAccess)
		case err != nil:
			st.log.ErrorContext(ctx, "stream: participation check failed", "err", err)
			c.Close(websocket.StatusInternalError, reasonInternal)
		case !ok:
			c.Close(websocket.StatusPolicyViolation, reasonRevoked)
		}
		return err == nil && ok
	}
	for {
		select {
		case id, ok := <-sub.C():
			if !ok {
				if errors.Is(sub.Err(), postgres.ErrNotifierClosed) {
					c.Close(websocket.StatusGoingAway, reasonShutdown)
				} else {
					c.Close(websocket.StatusServiceRestart, reasonLost)
				}
				return
			}
			m, err := st.db.RoomMemory(ctx, room, id)
			if errors.Is(err, bulkhead.ErrUnauthenticated) {
				c.Close(websocket.StatusPolicyViolation, reasonAccess)
				return
			}
			if errors.Is(err, bulkhead.ErrNotFound) {
				// Row-level security hides it (or it is gone already): has
				// the caller lost the room?
				if !stillIn() {
					return
				}
				continue
			}
			if err != nil {
				st.log.ErrorContext(ctx, "stream: read memory failed", "err", err)
				c.Close(websocket.StatusInternalError, reasonInternal)
				return
			}
			b, err := json.Marshal(m)
			if err != nil {
				st.log.ErrorContext(ctx, "stream: encode memory failed", "err", err)
				c.Close(websocket.StatusInternalError, reasonInternal)
				return
			}
			wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
			err = c.Write(wctx, websocket.MessageText, b)
			wcancel()
			if err != nil {
				return // the client is gone or too slow
			}
		case <-recheck.C:
			if !stillIn() {
				return
			}
		case <-expire.C:
			c.Close(code, reason)
			return
		case <-st.closing:
			c.Close(websocket.StatusGoingAway, reasonShutdown)
			return
		case <-clientGone:
			return
		}
	}
}

// read consumes what the client sends, so that pings are answered and a
// close is noticed. Messages are ignored; one over the read limit closes
// the stream (1009, by the library), and so does more than one a second
// beyond a burst of 10 (1008).
func (st *streams) read(ctx context.Context, c *websocket.Conn) {
	lim := rate.NewLimiter(1, 10)
	for {
		if _, _, err := c.Read(ctx); err != nil {
			return
		}
		if !lim.Allow() {
			c.Close(websocket.StatusPolicyViolation, reasonChatty)
			return
		}
	}
}
