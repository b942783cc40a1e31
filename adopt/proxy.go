package adopt

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Proxy is the read side of shadow mode for an application that can't call
// Replayer: a PostgreSQL wire-protocol proxy the application connects
// through during shadow. Every message passes unchanged, in both
// directions, authentication included (the proxy never sees a password it
// could use: SCRAM runs end to end). For a sampled fraction of the reads
// (a single SELECT or WITH without a locking clause or a call with effects
// outside the transaction, see eligible), once the statement's results
// have reached the client and before its ReadyForQuery does, the proxy
// replays the statement on the same connection, in the client's context:
//
//   - inside the client's transaction, in a savepoint it rolls back; or,
//     for a statement run outside a transaction, in a REPEATABLE READ
//     transaction it rolls back;
//   - three times: shadow, strict (bulkhead_adopt.strict = on), shadow
//     again; the rows both shadow runs returned that the strict run did not
//     are recorded, like Replayer's, under the tenant and entity the
//     policies read (contextInReplay).
//     In READ COMMITTED each run has its own snapshot, and a row a
//     concurrent transaction changed between the runs is missing from one
//     of the shadow runs, so it is not recorded: no false positive but a
//     row changed away and back between the runs.
//
// The client sees its own results, in order, and its transaction as it
// left it: the replay's settings, statements, portals and errors are
// rolled back or closed before the ReadyForQuery is passed on. A replay
// that fails (timeout, error) is counted and recorded nothing. When the
// connection can't be put back exactly (the final status differs), the
// proxy closes it: the client sees a broken connection, never a changed
// transaction. A client that pipelines past a Sync is not replayed (the
// replay would interleave with its messages); nor is COPY, nor a failed
// transaction.
//
// Clients are held to PostgreSQL's message-length limits (maxAuthMessage
// until authenticated, maxClientMessage after) and must finish start-up
// and authentication within AuthTimeout.
//
// TLS: with ProxyOptions.TLS the proxy answers a client's SSLRequest
// "yes" and terminates TLS itself (RequireTLS refuses clients without
// it); with UpstreamTLS it speaks TLS to the database, cancel requests
// included, and never falls back to plain text. Each leg's TLS is its
// own, so SCRAM's channel binding, which ties the password exchange to one
// TLS connection end to end, can't pass when both legs are TLS: the
// server offers it and checks it, and a client that binds (libpq's and
// pgx's default channel_binding=prefer does) is refused by the proxy with
// a message saying to connect with channel_binding=disable. With a
// plain-text leg to the database (the proxy beside it, on a Unix socket)
// the server offers no binding and clients connect as they are.
//
// Not supported: GSSAPI authentication and encryption, and TLS started
// without an SSLRequest (PostgreSQL 17's sslnegotiation=direct).
type Proxy struct {
	opts ProxyOptions
	rec  *recorder
	ln   net.Listener
	id   string // prefix of the statement, portal and savepoint names the replay uses

	connections, reads, sampled, replayed, skipped, failed, hidden atomic.Int64

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// ProxyOptions configures a Proxy.
type ProxyOptions struct {
	Listen     string         // host:port to listen on
	Upstream   string         // the database: host:port, or a Unix socket path (.../.s.PGSQL.5432)
	Sample     float64        // fraction (0..1) of eligible reads replayed
	Timeout    time.Duration  // statement_timeout of each replay; default 1s
	Skip       *regexp.Regexp // reads never replayed, besides the built-in list (nil: none)
	MaxReplays int            // replays after one Sync at most; default 4, the rest counted skipped
	// AuthTimeout bounds start-up and authentication, as PostgreSQL's
	// authentication_timeout does: a client that hasn't finished them by
	// then is disconnected. Default 1 minute (PostgreSQL's default).
	AuthTimeout time.Duration
	// TLS, when set, is offered to clients (an SSLRequest is answered
	// "yes" and the connection upgraded); nil answers "no".
	TLS *tls.Config
	// RequireTLS refuses a client that starts without TLS, as
	// PostgreSQL's hostssl does. It needs TLS.
	RequireTLS bool
	// UpstreamTLS, when set, is used on every connection to the database:
	// the proxy sends an SSLRequest and stops if the server declines. It
	// needs a TCP Upstream (PostgreSQL has no TLS on Unix sockets).
	UpstreamTLS *tls.Config
	Logger      *slog.Logger // nil: discard
}

// The longest message bodies the proxy reads from a client: PostgreSQL's
// own limits (PG_MAX_AUTH_TOKEN_LENGTH during authentication, then
// PQ_LARGE_MESSAGE_LIMIT). pgproto3's Backend has none by default and
// allocates the length a message declares before reading it, so without
// them a client that hasn't authenticated could make the proxy allocate
// 2 GB with a 5-byte header.
const (
	maxAuthMessage   = 65535
	maxClientMessage = 0x3fffffff - 1
)

// ProxyStats counts what a Proxy did. Reads counts eligible statements;
// Sampled those chosen; Replayed those replayed to the end; Skipped those
// chosen but not replayed (pipelined client, failed transaction, over
// MaxReplays, no adopt state in the database: nothing in shadow); Failed
// replays that errored; Hidden rows recorded.
type ProxyStats struct {
	Connections, Reads, Sampled, Replayed, Skipped, Failed, Hidden int64
}

// NewProxy listens on o.Listen; records go to pool's database (as a role
// that may write bulkhead_adopt: the operator's). Serve runs it.
func NewProxy(pool *pgxpool.Pool, o ProxyOptions) (*Proxy, error) {
	if o.Upstream == "" {
		return nil, errors.New("adopt proxy: the upstream database address is required")
	}
	if o.Sample < 0 || o.Sample > 1 {
		return nil, fmt.Errorf("adopt proxy: sample %v is not between 0 and 1", o.Sample)
	}
	switch {
	case o.Timeout == 0:
		o.Timeout = time.Second
	case o.Timeout < time.Millisecond:
		// statement_timeout counts milliseconds, and 0 turns it off.
		return nil, fmt.Errorf("adopt proxy: replay timeout %v is below a millisecond", o.Timeout)
	}
	if o.MaxReplays <= 0 {
		o.MaxReplays = 4
	}
	switch {
	case o.AuthTimeout == 0:
		o.AuthTimeout = time.Minute
	case o.AuthTimeout < 0:
		return nil, fmt.Errorf("adopt proxy: authentication timeout %v is negative", o.AuthTimeout)
	}
	if o.RequireTLS && o.TLS == nil {
		return nil, errors.New("adopt proxy: requiring TLS needs a certificate to offer")
	}
	if o.UpstreamTLS != nil && strings.HasPrefix(o.Upstream, "/") {
		return nil, fmt.Errorf("adopt proxy: TLS to a Unix socket (%s): PostgreSQL has none there; give a host:port", o.Upstream)
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("adopt proxy: listen: %w", err)
	}
	var b [6]byte
	if _, err := crand.Read(b[:]); err != nil {
		ln.Close()
		return nil, err
	}
	return &Proxy{opts: o, rec: newRecorder(pool), ln: ln,
		id: "bulkhead_adopt_replay_" + hex.EncodeToString(b[:]), conns: map[net.Conn]struct{}{}}, nil
}

// Addr is the address the proxy listens on.
func (px *Proxy) Addr() net.Addr { return px.ln.Addr() }

// Stats returns the counters so far.
func (px *Proxy) Stats() ProxyStats {
	return ProxyStats{px.connections.Load(), px.reads.Load(), px.sampled.Load(), px.replayed.Load(),
		px.skipped.Load(), px.failed.Load(), px.hidden.Load()}
}

// Dropped is the number of records lost to a full queue or a failed
// write.
func (px *Proxy) Dropped() int64 { return px.rec.Dropped() }

// Serve accepts connections until ctx is done, then closes the listener
// and every connection and flushes the records.
func (px *Proxy) Serve(ctx context.Context) error {
	stop := context.AfterFunc(ctx, px.closeAll)
	defer stop()
	var err error
	for {
		var c net.Conn
		c, err = px.ln.Accept()
		if err != nil {
			break
		}
		px.track(c, true)
		px.wg.Add(1)
		go func() {
			defer px.wg.Done()
			defer px.track(c, false)
			px.serve(ctx, c)
		}()
	}
	px.closeAll()
	px.wg.Wait()
	px.rec.Close()
	if ctx.Err() != nil {
		return nil
	}
	return fmt.Errorf("adopt proxy: accept: %w", err)
}

// closeAll closes the listener and every connection, client and upstream.
func (px *Proxy) closeAll() {
	px.ln.Close()
	px.mu.Lock()
	defer px.mu.Unlock()
	for c := range px.conns {
		c.Close()
	}
}

func (px *Proxy) track(c net.Conn, add bool) {
	px.mu.Lock()
	defer px.mu.Unlock()
	if add {
		px.conns[c] = struct{}{}
	} else {
		delete(px.conns, c)
		c.Close()
	}
}

// dial connects to the database, in TLS with UpstreamTLS (the SSLRequest
// answered "yes" and the handshake done within 10 seconds): a server that
// declines is an error, never a plain-text connection.
func (px *Proxy) dial(ctx context.Context) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second}
	if strings.HasPrefix(px.opts.Upstream, "/") {
		return d.DialContext(ctx, "unix", px.opts.Upstream)
	}
	c, err := d.DialContext(ctx, "tcp", px.opts.Upstream)
	if err != nil || px.opts.UpstreamTLS == nil {
		return c, err
	}
	tc, err := startTLS(ctx, c, px.opts.UpstreamTLS)
	if err != nil {
		c.Close()
		return nil, err
	}
	return tc, nil
}

// startTLS asks the server on c for TLS and does the handshake.
func startTLS(ctx context.Context, c net.Conn, cfg *tls.Config) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl) // the request and its answer; the handshake follows ctx
	req, err := (&pgproto3.SSLRequest{}).Encode(nil)
	if err != nil {
		return nil, err
	}
	if _, err := c.Write(req); err != nil {
		return nil, fmt.Errorf("ask the database for TLS: %w", err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return nil, fmt.Errorf("ask the database for TLS: %w", err)
	}
	if b[0] != 'S' {
		return nil, errUpstreamNoTLS
	}
	tc := tls.Client(c, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("TLS with the database: %w", err)
	}
	c.SetDeadline(time.Time{})
	return tc, nil
}

// errUpstreamNoTLS: the database answered an SSLRequest "no".
var errUpstreamNoTLS = errors.New("the database does not accept TLS")

// bindsChannel reports whether a client's first SCRAM message binds, or
// offers to bind, the exchange to its TLS connection: the mechanism
// SCRAM-SHA-256-PLUS, or the GS2 flag "y" (the client could bind but
// thinks the server can't, which a server in TLS refuses as a downgrade).
func bindsChannel(m pgproto3.FrontendMessage) bool {
	ir, ok := m.(*pgproto3.SASLInitialResponse)
	return ok && (ir.AuthMechanism == "SCRAM-SHA-256-PLUS" || bytes.HasPrefix(ir.Data, []byte("y,")))
}

// serve runs one client connection: start-up and authentication in lock
// step, then a goroutine per direction.
func (px *Proxy) serve(ctx context.Context, client net.Conn) {
	log := px.opts.Logger
	be := pgproto3.NewBackend(client, client)
	be.SetMaxBodyLen(maxAuthMessage)
	// Start-up and authentication end by this time, on both connections.
	deadline := time.Now().Add(px.opts.AuthTimeout)
	if client.SetDeadline(deadline) != nil {
		return
	}
	var startup *pgproto3.StartupMessage
	for startup == nil {
		m, err := be.ReceiveStartupMessage()
		if err != nil {
			return
		}
		switch m := m.(type) {
		case *pgproto3.SSLRequest:
			_, upgraded := client.(*tls.Conn)
			if px.opts.TLS == nil || upgraded {
				if _, err := client.Write([]byte{'N'}); err != nil {
					return
				}
				continue
			}
			if _, err := client.Write([]byte{'S'}); err != nil {
				return
			}
			tc := tls.Server(client, px.opts.TLS)
			if err := tc.Handshake(); err != nil { // within the deadline set above
				return
			}
			client = tc
			be = pgproto3.NewBackend(client, client)
			be.SetMaxBodyLen(maxAuthMessage)
		case *pgproto3.GSSEncRequest:
			if _, err := client.Write([]byte{'N'}); err != nil {
				return
			}
		case *pgproto3.CancelRequest:
			px.cancel(ctx, m)
			return
		case *pgproto3.StartupMessage:
			startup = &pgproto3.StartupMessage{ProtocolVersion: m.ProtocolVersion, Parameters: m.Parameters}
		}
	}
	if _, secure := client.(*tls.Conn); px.opts.RequireTLS && !secure {
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000",
			Message: "bulkhead adopt proxy: TLS is required (connect with sslmode=require or stronger)"})
		be.Flush()
		return
	}
	up, err := px.dial(ctx)
	if err != nil {
		log.Warn("adopt proxy: upstream unreachable", "err", err)
		msg := "bulkhead adopt proxy: the database is unreachable"
		if errors.Is(err, errUpstreamNoTLS) {
			msg = "bulkhead adopt proxy: the database does not accept TLS, which the proxy is set to require"
		}
		be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "08006", Message: msg})
		be.Flush()
		return
	}
	px.track(up, true)
	defer px.track(up, false)
	if up.SetDeadline(deadline) != nil {
		return
	}
	px.connections.Add(1)
	fe := pgproto3.NewFrontend(up, up)
	fe.Send(startup)
	if err := fe.Flush(); err != nil {
		return
	}
	for ready := false; !ready; {
		m, err := fe.Receive()
		if err != nil {
			return
		}
		be.Send(m)
		switch m.(type) {
		case *pgproto3.AuthenticationCleartextPassword, *pgproto3.AuthenticationMD5Password,
			*pgproto3.AuthenticationSASL, *pgproto3.AuthenticationSASLContinue:
			if be.Flush() != nil || be.SetAuthType(fe.GetAuthType()) != nil {
				return
			}
			cm, err := be.Receive()
			if err != nil {
				return
			}
			if px.opts.UpstreamTLS != nil && bindsChannel(cm) {
				be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000",
					Message: "bulkhead adopt proxy: SCRAM channel binding can't pass a proxy that ends TLS on both sides: connect with channel_binding=disable"})
				be.Flush()
				return
			}
			fe.Send(cm)
			if fe.Flush() != nil {
				return
			}
		case *pgproto3.AuthenticationGSS, *pgproto3.AuthenticationGSSContinue:
			be.Send(&pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: "28000",
				Message: "bulkhead adopt proxy: GSSAPI authentication is not supported"})
			be.Flush()
			return
		case *pgproto3.ErrorResponse:
			be.Flush()
			return
		case *pgproto3.ReadyForQuery:
			ready = true
		}
	}
	if be.Flush() != nil || client.SetDeadline(time.Time{}) != nil || up.SetDeadline(time.Time{}) != nil {
		return
	}
	be.SetMaxBodyLen(maxClientMessage)
	s := &session{px: px, be: be, fe: fe, stmts: map[string]*prepared{}, portals: map[string]*bound{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.fromClient()
		up.Close()
	}()
	if err := s.fromServer(); err != nil {
		log.Warn("adopt proxy: connection closed", "err", err)
	}
	client.Close()
	<-done
}

// cancel passes a cancel request on: the key is the server's, forwarded
// unchanged at start-up.
func (px *Proxy) cancel(ctx context.Context, m *pgproto3.CancelRequest) {
	up, err := px.dial(ctx)
	if err != nil {
		return
	}
	defer up.Close()
	b, err := m.Encode(nil)
	if err != nil {
		return
	}
	up.Write(b)
}

// readStart is a SELECT or WITH, after comments.
var readStart = regexp.MustCompile(`(?is)^\s*(?:(?:--[^\n]*\n|/\*.*?\*/)\s*)*(?:select|with)\b`)

// withEffects names what a replay must not run: writes, row locks (FOR
// UPDATE, FOR NO KEY UPDATE, FOR [KEY] SHARE: the words update and share),
// calls whose effects survive a rollback (sequences, advisory locks,
// dblink, signals) or that only waste time, and bulkhead.enter (adopt
// harden), which admits one context per transaction: a replay of it fails.
var withEffects = regexp.MustCompile(`(?i)\b(?:insert|update|delete|merge|into|copy|share|enter|nextval|setval|pg_advisory\w*|pg_try_advisory\w*|pg_notify|dblink\w*|pg_terminate_backend|pg_cancel_backend|pg_reload_conf|pg_sleep\w*|lo_\w+|pg_read_\w+|pg_write\w*|txid_current|pg_current_xact_id|set_config|pg_stat_reset\w*)\b`)

// eligible reports whether sql is one read the proxy may replay.
func (px *Proxy) eligible(sql string) bool {
	body := strings.TrimRight(sql, " \t\r\n;")
	if strings.Contains(body, ";") || !readStart.MatchString(body) || withEffects.MatchString(body) {
		return false
	}
	return px.opts.Skip == nil || !px.opts.Skip.MatchString(sql)
}
