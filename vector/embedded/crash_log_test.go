//go:build unix

package embedded

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bulkhead-dev/bulkhead/vector"
	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
)

// The step-killer process is this test binary run again with
// stepKillEnv = "<step>|<occurrence>": it runs stepOps against the
// collection in stepDirEnv, printing "acked <i>" after each write returns,
// and SIGKILLs itself the occurrence-th time the store reaches step.
const (
	stepKillEnv   = "BULKHEAD_EMBEDDED_STEP_KILL"
	stepDirEnv    = "BULKHEAD_EMBEDDED_STEP_DIR"
	stepTenantEnv = "BULKHEAD_EMBEDDED_STEP_TENANT"
	stepDim       = 8
	stepOpsCount  = 14
)

// stepOp is one write of the killer's sequence: an upsert or a delete.
type stepOp struct {
	upsert []vector.Point
	delete []uuid.UUID
}

// stepOps is the killer's sequence, the same in both processes: upserts
// of new points, replacements of earlier ones, and deletes.
func stepOps() []stepOp {
	var ops []stepOp
	var all []vector.Point
	for i := range stepOpsCount {
		switch {
		case i%4 == 3: // delete a point written two ops before
			ops = append(ops, stepOp{delete: []uuid.UUID{all[len(all)-7].ID}})
		case i%5 == 4: // replace an earlier point
			p := randomPoints(uint64(100+i), 1, stepDim)[0]
			p.ID = all[1].ID
			p.Payload = map[string]string{"op": strconv.Itoa(i)}
			ops = append(ops, stepOp{upsert: []vector.Point{p}})
		default:
			pts := randomPoints(uint64(10+i), 5, stepDim)
			for j := range pts {
				pts[j].Payload = map[string]string{"op": strconv.Itoa(i)}
			}
			all = append(all, pts...)
			ops = append(ops, stepOp{upsert: pts})
		}
	}
	return ops
}

// stateAfter is the collection after the first n ops (over seed).
func stateAfter(seed []vector.Point, n int) []vector.Point {
	m := make(map[uuid.UUID]vector.Point)
	for _, p := range seed {
		m[p.ID] = p
	}
	for _, op := range stepOps()[:n] {
		for _, p := range op.upsert {
			m[p.ID] = p
		}
		for _, id := range op.delete {
			delete(m, id)
		}
	}
	out := slices.Collect(maps.Values(m))
	slices.SortFunc(out, func(a, b vector.Point) int { return bytes.Compare(a.ID[:], b.ID[:]) })
	return out
}

// TestKilledAtEveryStep: a process SIGKILLed (by itself, from the test
// hook, so the kill lands exactly at the step) at each step of an append,
// of a log's creation, of a compaction and of dropping a torn log tail
// loses no acknowledged write and leaves files a restart recovers: the
// collection holds exactly the writes acknowledged before the kill, or
// those and the one in flight (a write is one record: all or nothing),
// no temporary file survives the restart, and the store goes on working.
// Compaction runs after every append whose log outgrows the snapshot, so
// the kills land in both foreground appends and background compactions.
func TestKilledAtEveryStep(t *testing.T) {
	if v := os.Getenv(stepKillEnv); v != "" {
		runStepKiller(t, v)
		return
	}
	steps := []string{stepLogCreated, stepLogExtended, stepAppendWritten, stepAppendSynced,
		stepSnapshotWritten, stepSnapshotSynced, stepSnapshotRenamed, stepLogTruncated, stepCompacted,
		stepLogTailDropped}
	for _, step := range steps {
		for _, n := range []int{1, 3} {
			if (step == stepLogCreated || step == stepLogTailDropped) && n > 1 {
				continue // happens once per run
			}
			t.Run(fmt.Sprintf("%s/%d", strings.ReplaceAll(step, " ", "_"), n), func(t *testing.T) {
				t.Parallel()
				killAtStep(t, step, n)
			})
		}
	}
}

func killAtStep(t *testing.T, step string, n int) {
	dir := t.TempDir()
	tenant := uuid.New()
	var seed []vector.Point
	s1, err := New(dir, WithCompactMin(-1))
	if err != nil {
		t.Fatal(err)
	}
	r1, ts := crashRouter(t, s1, tenant)
	if err := r1.CreateCollection(ts[0].ctx, ts[0].c, stepDim); err != nil {
		t.Fatal(err)
	}
	if step == stepLogTailDropped {
		// A log with a record and a torn tail, for the killer's load to cut.
		seed = randomPoints(99, 3, stepDim)
		if err := r1.Upsert(ts[0].ctx, ts[0].c, seed); err != nil {
			t.Fatal(err)
		}
	}
	s1.Close()
	if step == stepLogTailDropped {
		f, err := os.OpenFile(logPathOf(dir, tenant, 1), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		f.Write(upsertRecord(randomPoints(98, 2, stepDim), stepDim)[:30])
		f.Close()
	}

	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledAtEveryStep$", "-test.count=1")
	cmd.Env = append(os.Environ(), stepKillEnv+"="+step+"|"+strconv.Itoa(n), stepDirEnv+"="+dir, stepTenantEnv+"="+tenant.String())
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	var stdout strings.Builder
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			stdout.WriteString(sc.Text() + "\n")
			if v, ok := strings.CutPrefix(sc.Text(), "acked "); ok {
				i, _ := strconv.Atoi(v)
				acked = i + 1
			}
		}
		done <- cmd.Wait()
	}()
	select {
	case err = <-done:
	case <-time.After(crashWait):
		cmd.Process.Kill()
		<-done
		t.Fatalf("killer did not finish within %s", crashWait)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("killer exit: %v; want killed at %q #%d\n%s%s", err, step, n, stdout.String(), stderr.String())
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("killer exit: %v; want SIGKILL at %q #%d\n%s%s", err, step, n, stdout.String(), stderr.String())
	}

	s2 := openAfterKill(t, dir)
	s2.sweeping.Wait() // the sweep New starts removes temporary files
	for _, name := range dirNames(t, dir) {
		if isTemp(name) {
			t.Fatalf("temporary file %s survived the restart", name)
		}
	}
	r2, ts2 := crashRouter(t, s2, tenant)
	got := observe(t, ts2[0], r2, nil).Points
	want, inFlight := stateAfter(seed, acked), stateAfter(seed, min(acked+1, stepOpsCount))
	if !cmp.Equal(want, got) && !cmp.Equal(inFlight, got) {
		t.Fatalf("killed at %q #%d after %d acknowledged writes: the collection is neither those writes nor those and the next (-acknowledged +got):\n%s",
			step, n, acked, cmp.Diff(want, got))
	}
	// The store goes on: a write after the restart survives another.
	more := randomPoints(500, 2, stepDim)
	if err := r2.Upsert(ts2[0].ctx, ts2[0].c, more); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	s3 := openAfterKill(t, dir)
	r3, ts3 := crashRouter(t, s3, tenant)
	if st, err := r3.Stats(ts3[0].ctx, ts3[0].c); err != nil || st.Points != len(got)+2 {
		t.Fatalf("after a write and a second restart: %+v, %v; want %d points", st, err, len(got)+2)
	}
}

// openAfterKill opens dir once the kernel has released every copy of its
// lock. The killed process's copy goes at its death; but a child that a
// parallel subtest forked while this test's first store was open holds a
// duplicate of that store's locked descriptor until it execs, so ErrLocked
// is retried for a while.
func openAfterKill(t *testing.T, dir string) *Store {
	t.Helper()
	deadline := time.Now().Add(crashWait)
	for {
		s, err := New(dir)
		if err == nil {
			t.Cleanup(func() { s.Close() })
			return s
		}
		if !errors.Is(err, ErrLocked) || time.Now().After(deadline) {
			t.Fatalf("New(%s) after the kill: %v", dir, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// runStepKiller is the killed process (see stepKillEnv).
func runStepKiller(t *testing.T, spec string) {
	step, nStr, _ := strings.Cut(spec, "|")
	n, err := strconv.Atoi(nStr)
	if err != nil {
		t.Fatal(err)
	}
	tenant, err := uuid.Parse(os.Getenv(stepTenantEnv))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(os.Getenv(stepDirEnv), WithCompactMin(0))
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	s.hook = func(st, _ string) error {
		if st == step {
			seen++ // hooks run under the collection's lock: one at a time
			if seen == n {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
				time.Sleep(time.Minute)
			}
		}
		return nil
	}
	r, ts := crashRouter(t, s, tenant)
	for i, op := range stepOps() {
		if op.upsert != nil {
			err = r.Upsert(ts[0].ctx, ts[0].c, op.upsert)
		} else {
			err = r.Delete(ts[0].ctx, ts[0].c, op.delete)
		}
		if err != nil {
			t.Fatalf("op %d: %v", i, err)
		}
		fmt.Fprintf(os.Stdout, "acked %d\n", i)
		time.Sleep(2 * time.Millisecond) // let a background compaction start
	}
	s.Close() // waits for the last compaction
	t.Fatalf("step %q was reached %d times, not %d", step, seen, n)
}
