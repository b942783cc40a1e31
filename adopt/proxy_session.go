package adopt

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"github.com/jackc/pgx/v5/pgproto3"
)

// prepared is a client's prepared statement, as far as replay needs it.
type prepared struct {
	sql      string
	oids     []uint32
	eligible bool
}

// bound is a client's portal; params are kept only when it was sampled
// and they fit in maxReplayBytes (too: sampled, then skipped).
type bound struct {
	stmt    *prepared
	formats []int16
	params  [][]byte
	sampled bool
	tooBig  bool
}

// replay is a sampled statement waiting for the ReadyForQuery of the Sync
// that ends its group.
type replay struct {
	group   int64
	sql     string
	oids    []uint32
	formats []int16
	params  [][]byte
}

// session is one client connection. fromClient forwards the client's
// messages, fromServer the server's; a replay runs in fromServer while it
// holds wmu, so no client message reaches the server meanwhile.
type session struct {
	px *Proxy
	be *pgproto3.Backend  // to the client; written by fromServer only
	fe *pgproto3.Frontend // to the server; written under wmu

	wmu   sync.Mutex
	syncs atomic.Int64 // sync points forwarded (Sync, Query, FunctionCall); written under wmu before the message
	after atomic.Bool  // a message was forwarded after the last sync point; likewise

	pmu     sync.Mutex           // taken inside wmu, never the other way round
	stmts   map[string]*prepared // under pmu
	portals map[string]*bound    // under pmu
	pending []replay             // under pmu

	rfqs int64 // ReadyForQuery messages received; fromServer only
}

func (s *session) fromClient() {
	for {
		m, err := s.be.Receive()
		if err != nil {
			return
		}
		s.wmu.Lock()
		s.pmu.Lock()
		s.note(m)
		s.pmu.Unlock()
		switch m.(type) {
		case *pgproto3.Sync, *pgproto3.Query, *pgproto3.FunctionCall:
			s.syncs.Add(1)
			s.after.Store(false)
		default:
			s.after.Store(true)
		}
		s.fe.Send(m)
		switch m.(type) {
		case *pgproto3.Parse, *pgproto3.Bind, *pgproto3.Describe, *pgproto3.Execute, *pgproto3.Close:
			// The client must follow these with Sync or Flush.
		default:
			err = s.fe.Flush()
		}
		s.wmu.Unlock()
		if _, ok := m.(*pgproto3.Terminate); ok || err != nil {
			return
		}
	}
}

// note tracks statements and portals and queues sampled reads, before m
// is counted. Under pmu.
func (s *session) note(m pgproto3.FrontendMessage) {
	px := s.px
	switch m := m.(type) {
	case *pgproto3.Parse:
		s.stmts[m.Name] = &prepared{sql: m.Query, oids: append([]uint32(nil), m.ParameterOIDs...), eligible: px.eligible(m.Query)}
	case *pgproto3.Bind:
		st := s.stmts[m.PreparedStatement]
		b := &bound{stmt: st}
		if st != nil && st.eligible {
			px.reads.Add(1)
			if s.sample() {
				b.sampled = true
				size := len(st.sql)
				for _, p := range m.Parameters {
					size += len(p)
				}
				if b.tooBig = size > maxReplayBytes; !b.tooBig {
					b.formats = append([]int16(nil), m.ParameterFormatCodes...)
					b.params = make([][]byte, len(m.Parameters))
					for i, p := range m.Parameters {
						if p != nil {
							b.params[i] = append([]byte{}, p...)
						}
					}
				}
			}
		}
		s.portals[m.DestinationPortal] = b
	case *pgproto3.Execute:
		if b := s.portals[m.Portal]; b != nil && b.sampled {
			b.sampled = false // a portal fetched in parts is replayed once
			px.sampled.Add(1)
			if b.tooBig {
				px.skipped.Add(1)
				break
			}
			s.pending = append(s.pending, replay{group: s.syncs.Load() + 1, sql: b.stmt.sql, oids: b.stmt.oids, formats: b.formats, params: b.params})
		}
	case *pgproto3.Close:
		if m.ObjectType == 'S' {
			delete(s.stmts, m.Name)
		} else {
			delete(s.portals, m.Name)
		}
	case *pgproto3.Query:
		if px.eligible(m.String) {
			px.reads.Add(1)
			if s.sample() {
				px.sampled.Add(1)
				if len(m.String) > maxReplayBytes {
					px.skipped.Add(1)
					break
				}
				s.pending = append(s.pending, replay{group: s.syncs.Load() + 1, sql: m.String})
			}
		}
	}
}

// maxPending bounds the sampled statements waiting for their Sync: a
// client that pipelines thousands of reads gets the first ones sampled.
// maxReplayBytes bounds what one of them holds (its text and parameters):
// a larger one is counted sampled and skipped, so a connection holds at
// most 64 MiB for replays however large the messages PostgreSQL accepts.
const (
	maxPending     = 64
	maxReplayBytes = 1 << 20
)

// sample draws whether the next eligible read is replayed. Under pmu.
func (s *session) sample() bool {
	return s.px.opts.Sample > 0 && len(s.pending) < maxPending && rand.Float64() < s.px.opts.Sample
}

func (s *session) fromServer() error {
	for {
		m, err := s.fe.Receive()
		if err != nil {
			return nil
		}
		if r, ok := m.(*pgproto3.ReadyForQuery); ok {
			status := r.TxStatus
			s.rfqs++
			if err := s.replayDue(status); err != nil {
				return err
			}
			s.be.Send(&pgproto3.ReadyForQuery{TxStatus: status})
			if err := s.be.Flush(); err != nil {
				return nil
			}
			continue
		}
		s.be.Send(m)
		if s.fe.ReadBufferLen() == 0 {
			if err := s.be.Flush(); err != nil {
				return nil
			}
		}
	}
}

// replayDue replays the statements of the group the ReadyForQuery just
// received ends, when nothing of the client's has been sent since.
func (s *session) replayDue(status byte) error {
	px := s.px
	s.pmu.Lock()
	if status == 'I' {
		// Outside a transaction, named portals are gone.
		clear(s.portals)
	}
	var due []replay
	keep := s.pending[:0]
	for _, r := range s.pending {
		switch {
		case r.group > s.rfqs:
			keep = append(keep, r)
		case r.group == s.rfqs:
			due = append(due, r)
		default:
			px.skipped.Add(1)
		}
	}
	clear(s.pending[len(keep):])
	s.pending = keep
	s.pmu.Unlock()
	if len(due) == 0 {
		return nil
	}
	// A client that sent more after this group's Sync has messages on
	// their way to the server: nothing may be interleaved with them.
	clientQuiet := func() bool { return s.syncs.Load() == s.rfqs && !s.after.Load() }
	if status == 'E' || !clientQuiet() {
		px.skipped.Add(int64(len(due)))
		return nil
	}
	// The client has sent nothing since the Sync, so fromClient holds wmu
	// at most until it returns from writing that Sync: waiting is safe.
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if !clientQuiet() {
		px.skipped.Add(int64(len(due)))
		return nil
	}
	if len(due) > px.opts.MaxReplays {
		px.skipped.Add(int64(len(due) - px.opts.MaxReplays))
		due = due[:px.opts.MaxReplays]
	}
	return s.replay(due, status)
}

// replay runs due as the type comment of Proxy says and puts the
// connection back in status; an error means it could not, and the
// connection must be closed.
func (s *session) replay(due []replay, status byte) error {
	px := s.px
	sp := px.id
	// Read-only: a write, nextval or temp table behind a function the
	// eligibility check can't see into fails the replay instead of running
	// (a sequence would advance for good).
	begin := "SAVEPOINT " + sp + "; SET LOCAL transaction_read_only = on"
	end := "ROLLBACK TO SAVEPOINT " + sp + "; RELEASE SAVEPOINT " + sp
	if status == 'I' {
		begin, end = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", "ROLLBACK"
	}
	begin += fmt.Sprintf("; SET LOCAL statement_timeout = %d; SELECT %s", px.opts.Timeout.Milliseconds(), statePresent)
	s.fe.Send(&pgproto3.Query{String: begin})
	if err := s.fe.Flush(); err != nil {
		return err
	}
	res, st, err := s.collect()
	if err != nil {
		return err
	}
	if st != 'T' || res.failed {
		px.failed.Add(int64(len(due)))
		return s.restore(end, status)
	}
	if n := len(res.rows); n == 0 || len(res.rows[n-1]) != 1 || len(res.rows[n-1][0]) != 1 || res.rows[n-1][0][0] != "t" {
		px.skipped.Add(int64(len(due))) // no adopt state: nothing in shadow
		return s.restore(end, status)
	}

	stmt, mode, portal := sp+"_s", sp+"_m", sp+"_p"
	s.fe.Send(&pgproto3.Parse{Name: mode, Query: "SELECT pg_catalog.set_config('bulkhead_adopt.strict', $1, true), " + contextInReplay})
	run := func(name string, formats []int16, params [][]byte, describe bool) {
		s.fe.Send(&pgproto3.Bind{DestinationPortal: portal, PreparedStatement: name, ParameterFormatCodes: formats, Parameters: params, ResultFormatCodes: []int16{0}})
		if describe {
			s.fe.Send(&pgproto3.Describe{ObjectType: 'P', Name: portal})
		}
		s.fe.Send(&pgproto3.Execute{Portal: portal})
		s.fe.Send(&pgproto3.Close{ObjectType: 'P', Name: portal})
	}
	for _, r := range due {
		s.fe.Send(&pgproto3.Parse{Name: stmt, Query: r.sql, ParameterOIDs: r.oids})
		run(stmt, r.formats, r.params, true) // where its first column comes from
		run(mode, nil, [][]byte{[]byte("on")}, false)
		run(stmt, r.formats, r.params, false)
		run(mode, nil, [][]byte{[]byte("off")}, false)
		run(stmt, r.formats, r.params, false)
		s.fe.Send(&pgproto3.Close{ObjectType: 'S', Name: stmt})
	}
	s.fe.Send(&pgproto3.Close{ObjectType: 'S', Name: mode})
	s.fe.Send(&pgproto3.Sync{})
	if err := s.fe.Flush(); err != nil {
		return err
	}
	res, _, err = s.collect()
	if err != nil {
		return err
	}
	if res.failed {
		// An error made the server skip the rest of the batch, its Closes
		// included: close what it may have left (closing what doesn't
		// exist is no error), or the next replay's Parse would find them
		// and the client's session would keep them.
		for _, c := range []*pgproto3.Close{{ObjectType: 'P', Name: portal}, {ObjectType: 'S', Name: stmt}, {ObjectType: 'S', Name: mode}} {
			s.fe.Send(c)
		}
		s.fe.Send(&pgproto3.Sync{})
		if err := s.fe.Flush(); err != nil {
			return err
		}
		if _, _, err := s.collect(); err != nil {
			return err
		}
	}
	const runs = 5
	for i, r := range due {
		if len(res.rows) < runs*(i+1) {
			px.failed.Add(int64(len(due) - i))
			break
		}
		got := res.rows[runs*i : runs*(i+1)]
		tenant, entity := "", ""
		if len(got[1]) == 1 && len(got[1][0]) == 3 {
			tenant, entity = got[1][0][1], got[1][0][2]
		}
		hidden := hiddenRows(got[0], got[2], got[4])
		px.replayed.Add(1)
		px.hidden.Add(int64(len(hidden)))
		px.rec.observe(tenant, entity, r.sql, res.first[runs*i], hidden)
	}
	return s.restore(end, status)
}

// restore runs end and checks the connection is back in status.
func (s *session) restore(end string, status byte) error {
	s.fe.Send(&pgproto3.Query{String: end})
	if err := s.fe.Flush(); err != nil {
		return err
	}
	_, st, err := s.collect()
	if err != nil {
		return err
	}
	if st != status {
		return fmt.Errorf("adopt proxy: replay left the transaction in status %q, not %q: closing the connection", st, status)
	}
	return nil
}

// replayRows are the rows of each completed execution of a replay, in
// text, and where each one's first column comes from (when it was
// described).
type replayRows struct {
	rows   [][][]string
	first  []column
	failed bool
}

// collect reads the server's replies up to ReadyForQuery. Notifications
// are the client's and are passed on; notices and parameter reports of
// the replay are dropped (what they report is rolled back).
func (s *session) collect() (replayRows, byte, error) {
	var res replayRows
	var cur [][]string
	var desc column
	for {
		m, err := s.fe.Receive()
		if err != nil {
			return res, 0, err
		}
		switch m := m.(type) {
		case *pgproto3.DataRow:
			row := make([]string, len(m.Values))
			for i, v := range m.Values {
				if v == nil {
					row[i] = nullText
				} else {
					row[i] = string(v)
				}
			}
			cur = append(cur, row)
		case *pgproto3.RowDescription:
			if len(m.Fields) > 0 {
				desc = column{table: m.Fields[0].TableOID, attnum: int16(m.Fields[0].TableAttributeNumber)}
			}
		case *pgproto3.CommandComplete, *pgproto3.EmptyQueryResponse:
			res.rows = append(res.rows, cur)
			res.first = append(res.first, desc)
			cur, desc = nil, column{}
		case *pgproto3.ErrorResponse:
			res.failed = true
			s.px.opts.Logger.Debug("adopt proxy: replay failed", "code", m.Code)
		case *pgproto3.NotificationResponse:
			s.be.Send(m)
		case *pgproto3.ReadyForQuery:
			return res, m.TxStatus, nil
		case *pgproto3.ParseComplete, *pgproto3.BindComplete, *pgproto3.CloseComplete, *pgproto3.NoticeResponse,
			*pgproto3.ParameterStatus, *pgproto3.NoData:
		default:
			return res, 0, fmt.Errorf("adopt proxy: unexpected %T during a replay", m)
		}
	}
}
