package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

// LoadPhase counts the answers to the requests that started in one phase.
type LoadPhase struct {
	Name     string
	Requests int64
	OK       int64 // 2xx
	Unavail  int64 // 503 with Retry-After
	// Other counts every other answer: another status, 503 without
	// Retry-After, a transport error, the client's deadline passing.
	Other      int64
	OtherSeen  map[string]int64
	MaxLatency time.Duration
}

func (p *LoadPhase) seen(what string) {
	if p.OtherSeen == nil {
		p.OtherSeen = map[string]int64{}
	}
	if len(what) > 160 {
		what = what[:160]
	}
	p.OtherSeen[what]++
}

// WriteCheck is what the database holds of the load's writes, counted by
// the superuser after the load.
type WriteCheck struct {
	Acked, AckedMessages, AckedDocuments int64
	// Lost are acknowledged writes absent from the database; Duplicated,
	// present more than once. Target 0 both.
	Lost, Duplicated int64
	// Unacked are writes that got no 2xx; UnackedPresent of them committed
	// anyway (the answer was lost, or the commit's outcome was unknown to
	// bulkhead, which then answers 503): expected, never a loss.
	Unacked, UnackedPresent int64
}

// writeLoad posts messages (70 %) and documents (30 %) with unique
// contents as many tenants' users, from clients goroutines, and records
// which were acknowledged (2xx) and which not.
type writeLoad struct {
	p       *serveProc
	writers []writer
	client  *http.Client
	mu      sync.Mutex
	phase   *LoadPhase
	acked   map[string]bool // content -> is a document
	unacked map[string]bool
	stop    chan struct{}
	wg      sync.WaitGroup
	n       atomic.Int64
}

func startWriteLoad(p *serveProc, writers []writer, clients int, deadline time.Duration, first *LoadPhase) *writeLoad {
	l := &writeLoad{p: p, writers: writers, phase: first, acked: map[string]bool{}, unacked: map[string]bool{}, stop: make(chan struct{}),
		client: &http.Client{Timeout: deadline, Transport: &http.Transport{MaxIdleConnsPerHost: clients * 2}}}
	for c := range clients {
		l.wg.Add(1)
		go l.run(c)
	}
	return l
}

// setPhase makes later requests count in ph.
func (l *writeLoad) setPhase(ph *LoadPhase) {
	l.mu.Lock()
	l.phase = ph
	l.mu.Unlock()
}

// finish stops the load and waits for the requests in flight.
func (l *writeLoad) finish() {
	close(l.stop)
	l.wg.Wait()
}

func (l *writeLoad) run(c int) {
	defer l.wg.Done()
	rnd := mrand.New(mrand.NewPCG(uint64(c), 0x17))
	for seq := 0; ; seq++ {
		select {
		case <-l.stop:
			return
		default:
		}
		w := l.writers[rnd.IntN(len(l.writers))]
		doc := rnd.IntN(10) < 3
		content := fmt.Sprintf("load c%d n%d tenant %s", c, seq, w.tenant)
		var path, body string
		if doc {
			path = "/v1/documents"
			b, _ := json.Marshal(map[string]string{"title": content, "content": content + ": refunds take 30 days; shipping is free above 50 euros.", "visibility": "tenant"})
			body = string(b)
		} else {
			path = "/v1/rooms/" + w.room.String() + "/messages"
			b, _ := json.Marshal(map[string]string{"content": content})
			body = string(b)
		}
		req, _ := http.NewRequest("POST", l.p.base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+w.jwt)
		req.Header.Set("Content-Type", "application/json")
		l.mu.Lock()
		ph := l.phase
		l.mu.Unlock()
		t0 := time.Now()
		resp, err := l.client.Do(req)
		var status int
		var raw []byte
		if err == nil {
			raw, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			status = resp.StatusCode
		}
		took := time.Since(t0)
		l.mu.Lock()
		ph.Requests++
		ph.MaxLatency = max(ph.MaxLatency, took)
		switch {
		case err != nil:
			ph.Other++
			ph.seen("transport error: " + err.Error())
		case status/100 == 2:
			ph.OK++
		case status == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
			ph.Unavail++
		case status == http.StatusServiceUnavailable:
			ph.Other++
			ph.seen("503 without Retry-After")
		default:
			ph.Other++
			ph.seen(fmt.Sprintf("%d %s", status, strings.TrimSpace(string(raw))))
		}
		if err == nil && status/100 == 2 {
			l.acked[content] = doc
		} else {
			l.unacked[content] = doc
		}
		l.mu.Unlock()
		l.n.Add(1)
	}
}

// check counts, as the superuser, every write of the load in the database.
func (l *writeLoad) check(ctx context.Context) (WriteCheck, error) {
	var wc WriteCheck
	cl, err := l.p.cluster()
	if err != nil {
		return wc, err
	}
	conn, err := pgx.Connect(ctx, cl.SuperuserDSN(postgres.Database))
	if err != nil {
		return wc, err
	}
	defer conn.Close(ctx)
	counts := map[string]int64{}
	for _, q := range []string{
		`SELECT content, count(*) FROM bulkhead.memories WHERE content LIKE 'load c%' GROUP BY content`,
		`SELECT title, count(*) FROM bulkhead.documents WHERE title LIKE 'load c%' GROUP BY title`,
	} {
		rows, err := conn.Query(ctx, q)
		if err != nil {
			return wc, err
		}
		for rows.Next() {
			var c string
			var n int64
			if err := rows.Scan(&c, &n); err != nil {
				return wc, err
			}
			counts[c] += n
		}
		if err := rows.Err(); err != nil {
			return wc, err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for c, doc := range l.acked {
		wc.Acked++
		if doc {
			wc.AckedDocuments++
		} else {
			wc.AckedMessages++
		}
		switch n := counts[c]; {
		case n == 0:
			wc.Lost++
		case n > 1:
			wc.Duplicated++
		}
	}
	for c := range l.unacked {
		wc.Unacked++
		if counts[c] > 0 {
			wc.UnackedPresent++
		}
		if counts[c] > 1 {
			wc.Duplicated++
		}
	}
	return wc, nil
}
