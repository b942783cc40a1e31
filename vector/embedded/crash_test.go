//go:build unix

package embedded

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// The writer process is this test binary run again with crashWriterEnv set
// to a scenario name. Only the parent sets it, on the child's command, so a
// normal run never enters writer mode.
const (
	crashWriterEnv  = "BULKHEAD_EMBEDDED_CRASH_WRITER"
	crashDirEnv     = "BULKHEAD_EMBEDDED_CRASH_DIR"
	crashTenantsEnv = "BULKHEAD_EMBEDDED_CRASH_TENANTS" // "<A>,<B>"
	crashReady      = "crash writer: before rename: "   // + temp file path, on the writer's stdout
	crashDim        = 16
	crashWait       = 30 * time.Second // the parent's limit on each wait for the writer
	// crashOrphan bounds the writer's block before its rename, so a writer
	// whose parent died without killing it does not live forever.
	crashOrphan = 2 * time.Minute
)

// crashPoints are the points of the test, the same in both processes:
// seeds written by the parent, a write to B the writer completes before
// the crash, and the points of the write to A that is killed (new points
// and a changed version of an existing one).
func crashPoints() (seedA, seedB, laterB, killedA []vector.Point) {
	seedA = randomPoints(1, 40, crashDim)
	seedB = randomPoints(2, 30, crashDim)
	laterB = randomPoints(3, 2, crashDim)
	killedA = randomPoints(4, 10, crashDim)
	changed := randomPoints(5, 1, crashDim)[0]
	changed.ID = seedA[0].ID
	changed.Payload = map[string]string{"changed": "by the killed write"}
	killedA = append(killedA, changed)
	return seedA, seedB, laterB, killedA
}

// crashScenario is a write to tenant A that the writer is killed in.
type crashScenario struct {
	name  string
	gen   uint32 // the generation of A being written
	write func(ctx context.Context, r vector.Store, a vector.Collection) error
	// what the temporary file holds when the writer is killed
	tempDim, tempPoints int
	// acked: the write returns before the kill (it is in the log, and the
	// killed step is its background compaction), so it must survive.
	acked bool
}

var crashScenarios = []crashScenario{
	{
		name: "upsert_compaction",
		gen:  1,
		write: func(ctx context.Context, r vector.Store, a vector.Collection) error {
			_, _, _, killedA := crashPoints()
			return r.Upsert(ctx, a, killedA)
		},
		tempDim: crashDim, tempPoints: 40 + 10, // one killed point replaces a seed
		acked: true,
	},
	{
		name: "create_generation",
		gen:  2,
		write: func(ctx context.Context, r vector.Store, a vector.Collection) error {
			a2, err := a.AtGeneration(2)
			if err != nil {
				return err
			}
			return r.CreateCollection(ctx, a2, 3)
		},
		tempDim: 3, tempPoints: 0,
	},
}

// TestWriterKilledBetweenWriteAndRename: a writer process killed (SIGKILL)
// after it has written and fsynced a collection's temporary file but before
// renaming it leaves every collection exactly as it was before the killed
// write: the written collection, another tenant's, and a write that
// returned before the kill. Reopening the directory (its flock released by
// the kernel) removes the leftover temporary file. The kill comes from
// outside the process, so nothing in the store runs after the write: no
// deferred cleanup, no Close.
func TestWriterKilledBetweenWriteAndRename(t *testing.T) {
	if scenario := os.Getenv(crashWriterEnv); scenario != "" {
		runCrashWriter(t, scenario)
		return
	}
	for _, sc := range crashScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			tenantA, tenantB := uuid.New(), uuid.New()
			seedA, seedB, laterB, killedA := crashPoints()

			s1, err := New(dir)
			if err != nil {
				t.Fatal(err)
			}
			r1, ts := crashRouter(t, s1, tenantA, tenantB)
			mustCreate(t, ts[0].ctx, r1, ts[0].c, crashDim, seedA)
			mustCreate(t, ts[1].ctx, r1, ts[1].c, crashDim, seedB)
			if err := s1.Close(); err != nil {
				t.Fatal(err)
			}
			fileA := readFile(t, pathOf(dir, tenantA, 1))

			w := startCrashWriter(t, sc.name, dir, tenantA, tenantB)
			var tmp string
			select {
			case tmp = <-w.ready:
			case err := <-w.exited:
				w.reaped = true
				t.Fatalf("writer exited (%v) before reaching the rename\n%s", err, w.output())
			case <-time.After(crashWait):
				t.Fatalf("writer did not reach the rename within %s", crashWait)
			}

			// The writer holds the directory while it is blocked.
			if _, err := New(dir); !errors.Is(err, ErrLocked) {
				t.Fatalf("New while the writer holds the directory: %v; want ErrLocked", err)
			}
			// Its temporary file is complete and holds the write being killed.
			if !isTemp(filepath.Base(tmp)) || filepath.Dir(tmp) != dir {
				t.Fatalf("writer reported %s, not a temporary file in %s", tmp, dir)
			}
			d, err := decode(readFile(t, tmp), key{tenant: tenantA, gen: sc.gen})
			if err != nil {
				t.Fatalf("temporary file before the kill: %v", err)
			}
			if d.dim != sc.tempDim || d.len() != sc.tempPoints {
				t.Fatalf("temporary file holds %d points of dimension %d; want %d of %d", d.len(), d.dim, sc.tempPoints, sc.tempDim)
			}
			if sc.gen == 1 {
				for _, p := range killedA {
					if _, ok := d.index[p.ID]; !ok {
						t.Fatalf("temporary file lacks killed point %s", p.ID)
					}
				}
			}

			if err := w.cmd.Process.Kill(); err != nil {
				t.Fatalf("kill writer: %v", err)
			}
			select {
			case err := <-w.exited:
				w.reaped = true
				var ee *exec.ExitError
				if !errors.As(err, &ee) {
					t.Fatalf("writer exit: %v; want killed by SIGKILL\n%s", err, w.output())
				}
				if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
					t.Fatalf("writer exit: %v; want killed by SIGKILL\n%s", err, w.output())
				}
			case <-time.After(crashWait):
				t.Fatalf("killed writer not reaped within %s", crashWait)
			}

			// What the crash left: the old file, untouched, and the temporary file.
			if !bytes.Equal(fileA, readFile(t, pathOf(dir, tenantA, 1))) {
				t.Fatal("A's collection file changed")
			}
			if _, err := os.Stat(tmp); err != nil {
				t.Fatalf("temporary file after the kill: %v; want it left behind", err)
			}

			s2 := mustOpen(t, dir) // the kernel released the writer's flock
			s2.sweeping.Wait()     // the sweep New starts removes the temporary file
			names := dirNames(t, dir)
			want := []string{"LOCK", fileName(key{tenant: tenantA, gen: 1}), fileName(key{tenant: tenantB, gen: 1}),
				logName(key{tenant: tenantA, gen: 1}), logName(key{tenant: tenantB, gen: 1})}
			slices.Sort(want)
			if diff := cmp.Diff(want, names); diff != "" {
				t.Fatalf("directory after reopening (-want +got):\n%s", diff)
			}

			r2, ts2 := crashRouter(t, s2, tenantA, tenantB)
			var queries [][]float32
			for _, p := range slices.Concat(killedA, seedA[:3], seedB[:3], laterB) {
				queries = append(queries, p.Vector)
			}
			wantA := seedA
			if sc.acked {
				wantA = merged(seedA, killedA)
			}
			checkRecovered(t, "A", ts2[0], r2, wantA, queries)
			checkRecovered(t, "B", ts2[1], r2, slices.Concat(seedB, laterB), queries)
			a2 := mustGeneration(t, ts2[0].c, 2)
			if _, err := r2.Stats(ts2[0].ctx, a2); !errors.Is(err, vector.ErrNotFound) {
				t.Fatalf("A generation 2 after the crash: %v; want ErrNotFound", err)
			}
		})
	}
}

// runCrashWriter is the writer process: it completes a write to B, then
// makes scenario's write to A and, its temporary file written and fsynced,
// reports the file's path and blocks until it is killed.
func runCrashWriter(t *testing.T, scenario string) {
	i := slices.IndexFunc(crashScenarios, func(sc crashScenario) bool { return sc.name == scenario })
	if i < 0 {
		t.Fatalf("unknown crash scenario %q", scenario)
	}
	ids := strings.Split(os.Getenv(crashTenantsEnv), ",")
	if len(ids) != 2 {
		t.Fatalf("%s = %q", crashTenantsEnv, os.Getenv(crashTenantsEnv))
	}
	a, err := uuid.Parse(ids[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := uuid.Parse(ids[1])
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(os.Getenv(crashDirEnv), WithCompactMin(-1))
	if err != nil {
		t.Fatal(err)
	}
	r, ts := crashRouter(t, s, a, b)
	_, _, laterB, _ := crashPoints()
	if err := r.Upsert(ts[1].ctx, ts[1].c, laterB); err != nil {
		t.Fatalf("writer: upsert into B: %v", err)
	}
	s.beforeRename = func(tmp string) error {
		if _, err := fmt.Fprintf(os.Stdout, "%s%s\n", crashReady, tmp); err != nil {
			os.Exit(2)
		}
		time.Sleep(crashOrphan)
		os.Exit(3)
		return nil
	}
	sc := crashScenarios[i]
	if sc.acked {
		s.compactMin = 0 // the write's compaction runs in the background and blocks
	}
	err = sc.write(ts[0].ctx, r, ts[0].c)
	if sc.acked && err == nil {
		time.Sleep(crashOrphan)
		os.Exit(3)
	}
	t.Fatalf("writer: the write to A returned (%v) instead of blocking before its rename", err)
}

// crashWriter is a running writer process.
type crashWriter struct {
	cmd    *exec.Cmd
	ready  chan string // the temporary file's path, once the writer blocks
	exited chan error  // cmd.Wait's result, once stdout is drained
	reaped bool        // exited has been received from
	stdout strings.Builder
	stderr bytes.Buffer
}

// output is what the writer printed; call it only after exited was received.
func (w *crashWriter) output() string {
	return "writer stdout:\n" + w.stdout.String() + "writer stderr:\n" + w.stderr.String()
}

func startCrashWriter(t *testing.T, scenario, dir string, a, b uuid.UUID) *crashWriter {
	t.Helper()
	w := &crashWriter{ready: make(chan string, 1), exited: make(chan error, 1)}
	w.cmd = exec.Command(os.Args[0], "-test.run=^TestWriterKilledBetweenWriteAndRename$", "-test.count=1")
	w.cmd.Env = append(os.Environ(),
		crashWriterEnv+"="+scenario,
		crashDirEnv+"="+dir,
		crashTenantsEnv+"="+a.String()+","+b.String(),
	)
	w.cmd.Stderr = &w.stderr
	stdout, err := w.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start writer: %v", err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		signalled := false
		for sc.Scan() {
			line := sc.Text()
			w.stdout.WriteString(line + "\n")
			if tmp, ok := strings.CutPrefix(line, crashReady); ok && !signalled {
				signalled = true
				w.ready <- tmp
			}
		}
		w.exited <- w.cmd.Wait()
	}()
	t.Cleanup(func() {
		if w.reaped {
			return
		}
		w.cmd.Process.Kill()
		select {
		case <-w.exited:
			if t.Failed() {
				t.Log(w.output())
			}
		case <-time.After(crashWait):
			t.Errorf("writer %d not reaped within %s", w.cmd.Process.Pid, crashWait)
		}
	})
	return w
}

type crashTenant struct {
	ctx context.Context
	c   vector.Collection
}

// crashRouter routes tenants, all in one region, to s, and returns each
// tenant's scoped context and generation-1 collection.
func crashRouter(t *testing.T, s vector.Store, tenants ...uuid.UUID) (*vector.Router, []crashTenant) {
	t.Helper()
	regions := make(map[uuid.UUID]string, len(tenants))
	for _, id := range tenants {
		regions[id] = "r"
	}
	r := vector.NewRouter(vector.NewStaticRegions(regions), map[string]vector.Store{"r": s})
	ts := make([]crashTenant, len(tenants))
	for i, id := range tenants {
		ctx, err := bulkhead.WithScope(context.Background(), bulkhead.Scope{Tenant: id})
		if err != nil {
			t.Fatal(err)
		}
		c, err := r.Collection(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ts[i] = crashTenant{ctx, c}
	}
	return r, ts
}

// crashState is what a collection answers: stats, every point in id order,
// and the hits of some queries.
type crashState struct {
	Stats  vector.Stats
	Points []vector.Point
	Hits   [][]vector.Hit
}

func observe(t *testing.T, ct crashTenant, r vector.Store, queries [][]float32) crashState {
	t.Helper()
	var st crashState
	var err error
	if st.Stats, err = r.Stats(ct.ctx, ct.c); err != nil {
		t.Fatalf("Stats(%s): %v", ct.c, err)
	}
	for after := uuid.Nil; ; {
		page, err := r.Scroll(ct.ctx, ct.c, after, 7)
		if err != nil {
			t.Fatalf("Scroll(%s): %v", ct.c, err)
		}
		if len(page) == 0 {
			break
		}
		st.Points = append(st.Points, page...)
		after = page[len(page)-1].ID
	}
	for _, q := range queries {
		st.Hits = append(st.Hits, mustSearch(t, ct.ctx, r, ct.c, q, 5))
	}
	return st
}

// checkRecovered compares ct's collection in r with want, the points it
// held before the crash: Scroll must return exactly them, and Stats,
// Scroll and Search must answer as a fresh store that only ever received
// them.
func checkRecovered(t *testing.T, name string, ct crashTenant, r vector.Store, want []vector.Point, queries [][]float32) {
	t.Helper()
	got := observe(t, ct, r, queries)
	sorted := slices.Clone(want)
	slices.SortFunc(sorted, func(a, b vector.Point) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	if diff := cmp.Diff(sorted, got.Points); diff != "" {
		t.Fatalf("%s's points after the crash (-want +got):\n%s", name, diff)
	}
	refStore, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer refStore.Close()
	ref, rts := crashRouter(t, refStore, ct.c.Tenant())
	mustCreate(t, rts[0].ctx, ref, rts[0].c, crashDim, want)
	if diff := cmp.Diff(observe(t, rts[0], ref, queries), got); diff != "" {
		t.Fatalf("%s after the crash, against a store that never saw the killed write (-want +got):\n%s", name, diff)
	}
}

// merged is base with the points of over upserted onto it.
func merged(base, over []vector.Point) []vector.Point {
	byID := make(map[uuid.UUID]int, len(base))
	out := slices.Clone(base)
	for i, p := range out {
		byID[p.ID] = i
	}
	for _, p := range over {
		if i, ok := byID[p.ID]; ok {
			out[i] = p
			continue
		}
		byID[p.ID] = len(out)
		out = append(out, p)
	}
	return out
}

func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
