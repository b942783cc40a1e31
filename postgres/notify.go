package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgconn/ctxwatch"
)

// Notifications travel on one channel per tenant (migration 00011): its
// name is "bulkhead_" followed by 128 bits of an HMAC of the tenant id under
// a key only the database's definer role can read, and the payload is
// "<room id>:<memory id>". A session of the runtime role can't derive
// another tenant's channel name, and bulkhead.notify_listen(), which
// LISTENs on a tenant's channel, answers only in a tenant context with no
// entity (the context the Notifier uses, never an entity's).

// ErrNotificationsLost ends a subscription that may have missed
// notifications: the listening connection broke, or the subscriber fell
// more than NotifierConfig.Buffer notifications behind. The subscriber
// should re-read what it needs (the room's history) and subscribe again.
var ErrNotificationsLost = errors.New("notifications may have been lost")

// ErrNotifierClosed ends subscriptions when the Notifier is closed.
var ErrNotifierClosed = errors.New("notifier closed")

// NotifierConfig configures a Notifier. The zero value gives the defaults.
type NotifierConfig struct {
	// ConnConfig opens the listening connection. It must reach PostgreSQL
	// directly (or through PgBouncer in session mode): through PgBouncer in
	// transaction mode LISTEN silently receives nothing. Nil: the runtime
	// pool's settings (the same role and database).
	ConnConfig *pgx.ConnConfig
	// Logger receives connection failures. Nil: discarded.
	Logger *slog.Logger
	// MinBackoff and MaxBackoff bound the (jittered, doubling) wait between
	// reconnection attempts: 100 ms and 10 s if zero.
	MinBackoff, MaxBackoff time.Duration
	// PingInterval is how long the listening connection may be silent
	// before it is pinged, to notice a dead server: 30 s if zero.
	PingInterval time.Duration
	// IdleTimeout is how long the connection stays open after the last
	// subscriber leaves: 1 minute if zero.
	IdleTimeout time.Duration
	// Buffer is how many undelivered notifications a subscription holds
	// before it is ended with ErrNotificationsLost: 64 if zero.
	Buffer int
}

// Notifier turns the trigger's notifications into per-room subscriptions.
// It holds one dedicated connection, opened when the first subscriber
// arrives, reopened with backoff when it breaks while anyone is subscribed,
// and closed IdleTimeout after the last one leaves. On it, it LISTENs on
// the channel of each tenant that has subscribers (and UNLISTENs when the
// last one leaves).
//
// What it guarantees, and what it does not:
//   - The listening connection receives the room and memory ids of the
//     subscribed tenants' new memories: the server process is trusted with
//     them, as it is with everything it serves. Ids are all a notification
//     carries.
//   - A notification is routed only to the subscribers of its (tenant,
//     room), but routing is not what keeps tenants apart: a subscriber
//     reads the memory itself through DB (RoomMemory) in its own scope, so
//     row-level security decides whether it exists for that subscriber.
//     Nothing reaches a client without that read.
//   - Delivery is at most once. Notifications committed after Subscribe
//     returns are delivered until the subscription ends; a subscription
//     that may have missed one is ended with ErrNotificationsLost, never
//     silently continued.
//
// It is safe for concurrent use.
type Notifier struct {
	cfg    NotifierConfig
	log    *slog.Logger
	ctxKey ContextKey // signs the tenant context listenTenant enters

	mu        sync.Mutex
	subs      map[roomKey]map[*Subscription]struct{}
	tenants   map[uuid.UUID]*tenantListen // tenants with subscribers
	channels  map[string]uuid.UUID        // listened on the current connection
	count     int
	gen       uint64 // incremented whenever a listener starts or stops
	running   bool
	dirty     bool               // tenants changed since the last sync
	interrupt context.CancelFunc // ends the current wait for a notification
	stop      context.CancelFunc
	idle      *time.Timer
	closed    bool
	done      chan struct{} // closed by Close
	wg        sync.WaitGroup
}

type roomKey struct{ tenant, room uuid.UUID }

// tenantListen is one tenant's state: how many subscribers, and whether its
// channel is LISTENed on the current connection (ready is closed then).
type tenantListen struct {
	subs      int
	listening bool
	ready     chan struct{}
}

// NewNotifier returns a Notifier over db's runtime role (or cfg.ConnConfig).
// It opens no connection until the first Subscribe.
func NewNotifier(db *DB, cfg NotifierConfig) *Notifier {
	if cfg.ConnConfig == nil {
		cfg.ConnConfig = db.app.Config().ConnConfig
	} else {
		cfg.ConnConfig = cfg.ConnConfig.Copy()
	}
	// A context deadline only interrupts the read: the default handler would
	// also send a cancel request, which could cancel the ping that follows.
	cfg.ConnConfig.BuildContextWatcherHandler = func(c *pgconn.PgConn) ctxwatch.Handler {
		return &pgconn.DeadlineContextWatcherHandler{Conn: c.Conn()}
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	cfg.ConnConfig.RuntimeParams["application_name"] = "bulkhead notifier"
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = max(10*time.Second, cfg.MinBackoff)
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = time.Minute
	}
	if cfg.Buffer <= 0 {
		cfg.Buffer = 64
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Notifier{cfg: cfg, log: log, ctxKey: db.ctxKey, subs: map[roomKey]map[*Subscription]struct{}{},
		tenants: map[uuid.UUID]*tenantListen{}, channels: map[string]uuid.UUID{}, done: make(chan struct{})}
}

// Subscription receives the ids of new memories in one room of one tenant.
// Ids are not permission: read each memory in the subscriber's own scope.
type Subscription struct {
	n   *Notifier
	key roomKey
	c   chan uuid.UUID
	err error // guarded by n.mu; set before c is closed
	in  bool  // guarded by n.mu; still registered
}

// C delivers the ids. It is closed when the subscription ends other than
// by Close; Err then says why.
func (s *Subscription) C() <-chan uuid.UUID { return s.c }

// Err returns ErrNotificationsLost or ErrNotifierClosed once C is closed,
// and nil before that or after Close.
func (s *Subscription) Err() error {
	s.n.mu.Lock()
	defer s.n.mu.Unlock()
	return s.err
}

// Close ends the subscription. It is idempotent.
func (s *Subscription) Close() {
	n := s.n
	n.mu.Lock()
	defer n.mu.Unlock()
	if s.in {
		n.removeLocked(s)
	}
}

// Subscribe subscribes to the new memories of room in tenant. It returns
// once the tenant's channel is LISTENed on, so that every memory committed
// afterwards is announced (until the subscription ends). It returns ctx's
// error if ctx ends first (the database is unreachable, say) and
// ErrNotifierClosed after Close.
//
// Subscribe does not check that the caller may see the room: the caller
// does that, and reads each memory in its own scope.
func (n *Notifier) Subscribe(ctx context.Context, tenant, room uuid.UUID) (*Subscription, error) {
	s := &Subscription{n: n, key: roomKey{tenant, room}, c: make(chan uuid.UUID, n.cfg.Buffer), in: true}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return nil, ErrNotifierClosed
	}
	set := n.subs[s.key]
	if set == nil {
		set = map[*Subscription]struct{}{}
		n.subs[s.key] = set
	}
	set[s] = struct{}{}
	n.count++
	tl := n.tenants[tenant]
	if tl == nil {
		tl = &tenantListen{ready: make(chan struct{})}
		n.tenants[tenant] = tl
		n.changedLocked()
	}
	tl.subs++
	if n.idle != nil {
		n.idle.Stop()
		n.idle = nil
	}
	if !n.running {
		n.startLocked()
	}
	listening, ready := tl.listening, tl.ready
	n.mu.Unlock()
	if listening {
		return s, nil
	}
	select {
	case <-ready:
		return s, nil
	case <-n.done:
		s.Close()
		return nil, ErrNotifierClosed
	case <-ctx.Done():
		s.Close()
		return nil, fmt.Errorf("subscribe to room notifications: %w", ctx.Err())
	}
}

// Close ends every subscription with ErrNotifierClosed and closes the
// listening connection. It is idempotent.
func (n *Notifier) Close() {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.closed = true
	close(n.done)
	n.endAllLocked(ErrNotifierClosed)
	if n.running {
		n.stopLocked()
	}
	n.mu.Unlock()
	n.wg.Wait()
}

// changedLocked tells the listener that the set of tenants changed.
func (n *Notifier) changedLocked() {
	n.dirty = true
	if n.interrupt != nil {
		n.interrupt()
	}
}

func (n *Notifier) startLocked() {
	n.gen++
	ctx, cancel := context.WithCancel(context.Background())
	n.stop, n.running = cancel, true
	n.wg.Add(1)
	go n.run(ctx, n.gen)
}

func (n *Notifier) stopLocked() {
	n.stop()
	if n.idle != nil {
		n.idle.Stop()
		n.idle = nil
	}
	n.gen++
	n.running = false
	n.resetListensLocked()
}

// resetListensLocked forgets what the (closed) connection listened on.
func (n *Notifier) resetListensLocked() {
	clear(n.channels)
	for _, tl := range n.tenants {
		if tl.listening {
			tl.listening = false
			tl.ready = make(chan struct{})
		}
	}
	n.dirty = true
}

// removeLocked unregisters s; the last one out arms the idle timer.
func (n *Notifier) removeLocked(s *Subscription) {
	s.in = false
	set := n.subs[s.key]
	delete(set, s)
	if len(set) == 0 {
		delete(n.subs, s.key)
	}
	if tl := n.tenants[s.key.tenant]; tl != nil {
		if tl.subs--; tl.subs == 0 {
			delete(n.tenants, s.key.tenant)
			if !tl.listening {
				close(tl.ready) // wake a Subscribe still waiting (its subscription has ended)
			}
			n.changedLocked()
		}
	}
	n.count--
	if n.count == 0 && n.running && n.idle == nil {
		gen := n.gen
		n.idle = time.AfterFunc(n.cfg.IdleTimeout, func() {
			n.mu.Lock()
			defer n.mu.Unlock()
			if n.gen == gen && n.running && n.count == 0 {
				n.idle = nil
				n.stopLocked()
			}
		})
	}
}

func (n *Notifier) endLocked(s *Subscription, err error) {
	n.removeLocked(s)
	s.err = err
	close(s.c)
}

func (n *Notifier) endAllLocked(err error) {
	for _, set := range n.subs {
		for s := range set {
			n.endLocked(s, err)
		}
	}
}

// run keeps one listening connection open until ctx ends or, after a
// failure, nobody is subscribed.
func (n *Notifier) run(ctx context.Context, gen uint64) {
	defer n.wg.Done()
	backoff := n.cfg.MinBackoff
	for {
		connected, err := n.listen(ctx, gen)
		if ctx.Err() != nil {
			return
		}
		n.mu.Lock()
		if n.gen != gen {
			n.mu.Unlock()
			return
		}
		// Whatever was committed while the connection was down is
		// unannounced: end the subscriptions of the tenants that were
		// listened on rather than pretend. Those still waiting for their
		// first LISTEN keep waiting.
		for _, set := range n.subs {
			for s := range set {
				if tl := n.tenants[s.key.tenant]; tl != nil && tl.listening {
					n.endLocked(s, ErrNotificationsLost)
				}
			}
		}
		n.resetListensLocked()
		if n.count == 0 {
			n.stopLocked()
			n.mu.Unlock()
			return
		}
		n.mu.Unlock()
		if connected {
			backoff = n.cfg.MinBackoff
		}
		n.log.Warn("notifier: listening connection failed; reconnecting", "err", err, "backoff", backoff)
		wait := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		backoff = min(2*backoff, n.cfg.MaxBackoff)
	}
}

// listen opens the connection, keeps its LISTENs in step with the
// subscribed tenants and dispatches notifications until the connection
// fails. connected reports whether the connection was established.
func (n *Notifier) listen(ctx context.Context, gen uint64) (connected bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, n.cfg.ConnConfig)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	for {
		if err := n.sync(ctx, conn, gen); err != nil {
			return true, err
		}
		wctx, cancel := context.WithTimeout(ctx, n.cfg.PingInterval)
		n.mu.Lock()
		if n.gen != gen {
			n.mu.Unlock()
			cancel()
			return true, context.Canceled
		}
		if n.dirty {
			n.mu.Unlock()
			cancel()
			continue
		}
		n.interrupt = cancel
		n.mu.Unlock()
		note, err := conn.WaitForNotification(wctx)
		n.mu.Lock()
		n.interrupt = nil
		n.mu.Unlock()
		cancel()
		switch {
		case err == nil:
			n.dispatch(note.Channel, note.Payload)
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.Canceled):
			// Interrupted (the deadline handler leaves the connection
			// usable) because the tenants changed: sync, then wait again.
		case pgconn.Timeout(err):
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
		default:
			return true, fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// sync LISTENs on the channels of newly subscribed tenants and UNLISTENs
// those of tenants nobody is subscribed to any more.
func (n *Notifier) sync(ctx context.Context, conn *pgx.Conn, gen uint64) error {
	n.mu.Lock()
	n.dirty = false
	var add []uuid.UUID
	for t, tl := range n.tenants {
		if !tl.listening {
			add = append(add, t)
		}
	}
	var drop []string
	for c, t := range n.channels {
		if n.tenants[t] == nil {
			drop = append(drop, c)
		}
	}
	n.mu.Unlock()
	for _, t := range add {
		c, err := listenTenant(ctx, conn, n.ctxKey, t)
		if err != nil {
			return err
		}
		n.mu.Lock()
		if n.gen != gen {
			n.mu.Unlock()
			return context.Canceled
		}
		n.channels[c] = t
		if tl := n.tenants[t]; tl != nil && !tl.listening {
			tl.listening = true
			close(tl.ready)
		}
		n.mu.Unlock()
	}
	for _, c := range drop {
		if _, err := conn.Exec(ctx, "SELECT bulkhead.notify_unlisten($1)", c); err != nil {
			return fmt.Errorf("unlisten: %w", err)
		}
		n.mu.Lock()
		if t, ok := n.channels[c]; ok && n.tenants[t] == nil {
			delete(n.channels, c)
		}
		n.mu.Unlock()
	}
	return nil
}

// listenTenant LISTENs on tenant's channel, in a transaction with the
// tenant (and no entity) in context, and returns the channel's name. The
// name is computed and LISTENed on inside the database: it never appears in
// a query text.
func listenTenant(ctx context.Context, conn *pgx.Conn, key ContextKey, tenant uuid.UUID) (string, error) {
	tx := &scopedTx{conn: conn, key: key, scope: bulkhead.Scope{Tenant: tenant}}
	var channel *string
	if err := tx.QueryRow(ctx, "SELECT bulkhead.notify_listen()").Scan(&channel); err != nil {
		tx.Rollback(ctx)
		return "", fmt.Errorf("listen for tenant %s: %w", tenant, err)
	}
	if err := tx.Commit(ctx); err != nil { // LISTEN takes effect at commit
		return "", fmt.Errorf("listen for tenant %s: %w", tenant, err)
	}
	if channel == nil {
		return "", fmt.Errorf("listen for tenant %s: the database refused the notifier context", tenant)
	}
	return *channel, nil
}

// dispatch routes one notification to its room's subscribers. A subscriber
// whose buffer is full is ended (ErrNotificationsLost): the connection is
// never held up by a slow one.
func (n *Notifier) dispatch(channel, payload string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	tenant, ok := n.channels[channel]
	if !ok {
		return // a tenant just unsubscribed
	}
	room, id, ok := parseNotification(payload)
	if !ok {
		n.log.Warn("notifier: malformed notification ignored", "bytes", len(payload))
		return
	}
	for s := range n.subs[roomKey{tenant, room}] {
		select {
		case s.c <- id:
		default:
			n.endLocked(s, ErrNotificationsLost)
		}
	}
}

// parseNotification parses "<room id>:<memory id>".
func parseNotification(p string) (room, id uuid.UUID, ok bool) {
	parts := strings.Split(p, ":")
	if len(parts) != 2 {
		return uuid.Nil, uuid.Nil, false
	}
	var ids [2]uuid.UUID
	for i, s := range parts {
		v, err := uuid.Parse(s)
		if err != nil || len(s) != 36 {
			return uuid.Nil, uuid.Nil, false
		}
		ids[i] = v
	}
	return ids[0], ids[1], true
}

// RoomMemory returns one memory of room, read in the caller's scope: the
// read that turns a notification (ids only) into content. It returns
// bulkhead.ErrNotFound when the memory does not exist or row-level security
// hides it (another tenant's, or a room the caller does not participate
// in), and bulkhead.ErrUnauthenticated without a scope.
func (db *DB) RoomMemory(ctx context.Context, room, id uuid.UUID) (bulkhead.Memory, error) {
	s, err := scopeFrom(ctx)
	if err != nil {
		return bulkhead.Memory{}, err
	}
	var m bulkhead.Memory
	err = db.ReadRow(ctx, `SELECT id, room_id, author_id, kind, content, created_at FROM bulkhead.memories
		WHERE tenant_id = $1 AND room_id = $2 AND id = $3`, []any{s.Tenant, room, id},
		&m.ID, &m.RoomID, &m.AuthorID, &m.Kind, &m.Content, &m.CreatedAt)
	if err != nil {
		return bulkhead.Memory{}, fmt.Errorf("read memory %s: %w", id, err)
	}
	return m, nil
}
