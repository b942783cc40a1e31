package bench

import (
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Markdown writes r as the docs/BENCHMARKS.md section for the RLS tax,
// naming the command that produced it.
func (r *Result) Markdown(w io.Writer, command string) {
	fmt.Fprintf(w, "## RLS tax (`%s`)\n\n", command)
	fmt.Fprintf(w, "Measured %s on %d CPU cores (%s/%s), PostgreSQL %s, on a private cluster (fsync off, shared_buffers 1GB).\n",
		time.Now().UTC().Format("2006-01-02"), runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, r.PGVersion)
	var rows []string
	for t, n := range r.Rows {
		rows = append(rows, fmt.Sprintf("%s %d", t, n))
	}
	sort.Strings(rows)
	fmt.Fprintf(w, "Dataset: %d tenants; rows per table: %s. Setup took %s.\n\n", r.Config.Tenants, strings.Join(rows, ", "), r.Setup.Round(time.Second))
	fmt.Fprintln(w, "Each operation runs through the same Go code (`postgres.DB`, context set in the same round trip) on the same database:")
	fmt.Fprintln(w, "as the runtime role under bulkhead's policies (RLS + FORCE), and as a role with the runtime role's privileges that bypasses")
	fmt.Fprintln(w, "row-level security, where the query's own `WHERE tenant_id = $1` is the only filter (the baseline the issue asks for). A third")
	fmt.Fprintln(w, "side runs as that role with the entity checks written into the query, as an application enforcing membership in code would")
	fmt.Fprintln(w, "(\"app-side checks\"). A fourth side, the control, runs the baseline's query again: its ratio to the baseline (\"A/A\") is")
	fmt.Fprintln(w, "what this harness reports when nothing differs, the bias and noise every other ratio of the run carries. Each side has its own")
	pin := "not pinned"
	if r.Config.PinPostgres >= 0 {
		pin = fmt.Sprintf("pinned to CPU %d", r.Config.PinPostgres)
	}
	fmt.Fprintf(w, "connection pool; PostgreSQL's backends are %s. %d samples per case, each run on all four sides in an order drawn at random per sample\n", pin, r.Config.Ops)
	fmt.Fprintln(w, "(paired, interleaved); medians and p95 in µs.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| operation | RLS median | baseline median | ratio (target ≤ 1.05) | app-side checks median | RLS / app-side | A/A control | RLS p95 | baseline p95 |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range r.Cases {
		fmt.Fprintf(w, "| %s | %s | %s | **%.3f** | %s | %.3f | %.3f | %s | %s |\n", c.Name, us(c.RLS), us(c.Plain), c.Ratio(), us(c.App), c.AppRatio(), c.AARatio(), us(c.RLSP95), us(c.PlainP95))
	}
	fmt.Fprintln(w, "\nRound trips per scoped operation, counted on the wire (a write that follows a read starts one):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| operation | round trips |")
	fmt.Fprintln(w, "|---|---:|")
	for _, rt := range r.RoundTrips {
		fmt.Fprintf(w, "| %s | %d |\n", rt.Name, rt.N)
	}
	fmt.Fprintln(w, "\nThe context statement, same run, on the copy without policies (same query on every side; one batch, one round trip each; medians in µs):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| point read preceded by | median | vs set_config |")
	fmt.Fprintln(w, "|---|---:|---:|")
	fmt.Fprintf(w, "| nothing | %s | %.3f |\n", us(r.Context.None), float64(r.Context.None)/float64(r.Context.SetConfig))
	fmt.Fprintf(w, "| `set_config` ×3 (before issue 11; forgeable) | %s | 1.000 |\n", us(r.Context.SetConfig))
	fmt.Fprintf(w, "| `bulkhead.enter(token)` (signed, verified in C; signing in Go included) | %s | **%.3f** |\n", us(r.Context.Signed), r.Context.Ratio())
	fmt.Fprintf(w, "| RLS point read (policies on), context by `set_config` on plain settings, PL/pgSQL membership helper (old) | %s | 1.000 (reference) |\n", us(r.Context.OldRLS))
	fmt.Fprintf(w, "| RLS point read (policies on), context by `enter(token)`, native membership look-up (now) | %s | **%.3f** |\n", us(r.Context.NewRLS), r.Context.RLSRatio())
	fmt.Fprintf(w, "\nTime PostgreSQL spends inside `bulkhead.enter` (HMAC check + three settings; `pg_stat_user_functions`, mean of %d calls): %s µs.\n", r.Config.Ops+200, us(r.Context.EnterServer))
	if pb := r.PGBench; pb != nil {
		fmt.Fprintf(w, "\nThe point read cross-checked with pgbench (`%s`; each side alone for %d s per round, sides alternating; the baseline and app-side sides as the role that bypasses row-level security, on the same database; the context entered in the same pipeline, one round trip; pgbench's latency average in µs):\n\n", pb.Command, pb.Seconds)
		fmt.Fprintln(w, "| round | RLS | baseline | app-side checks | RLS / baseline | RLS / app-side |")
		fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|")
		for i := range pb.RLS {
			fmt.Fprintf(w, "| %d | %s | %s | %s | **%.3f** | **%.3f** |\n", i+1, us(pb.RLS[i]), us(pb.Plain[i]), us(pb.App[i]), pb.RLSPlain(i), pb.RLSApp(i))
		}
	}
	fmt.Fprintf(w, "\nParticipant check in a %d-member room (with RLS): one indexed `EXISTS` %s vs loading every participant %s: **%.1f×** faster.\n",
		r.Config.BigRoom, us(r.ParticipantCheck), us(r.LoadAllParticipants), float64(r.LoadAllParticipants)/float64(r.ParticipantCheck))
}

// Table prints a short terminal summary.
func (r *Result) Table(w io.Writer) {
	fmt.Fprintf(w, "%-32s %10s %12s %8s %10s %8s %8s\n", "operation", "RLS µs", "baseline µs", "ratio", "app µs", "vs app", "A/A")
	for _, c := range r.Cases {
		fmt.Fprintf(w, "%-32s %10s %12s %8.3f %10s %8.3f %8.3f\n", c.Name, us(c.RLS), us(c.Plain), c.Ratio(), us(c.App), c.AppRatio(), c.AARatio())
	}
	for _, rt := range r.RoundTrips {
		fmt.Fprintf(w, "round trips: %-60s %d\n", rt.Name, rt.N)
	}
	fmt.Fprintf(w, "context: read alone %s µs, after set_config (old) %s µs, after enter(token) %s µs (%.3fx set_config); inside enter() %s µs per call\n",
		us(r.Context.None), us(r.Context.SetConfig), us(r.Context.Signed), r.Context.Ratio(), us(r.Context.EnterServer))
	fmt.Fprintf(w, "context under RLS (point read): old set_config + PL/pgSQL membership %s µs, enter(token) + native membership %s µs (%.3fx)\n", us(r.Context.OldRLS), us(r.Context.NewRLS), r.Context.RLSRatio())
	if pb := r.PGBench; pb != nil {
		for i := range pb.RLS {
			fmt.Fprintf(w, "pgbench point read, round %d: RLS %s µs, baseline %s µs, app-side %s µs (%.3fx, %.3fx)\n", i+1, us(pb.RLS[i]), us(pb.Plain[i]), us(pb.App[i]), pb.RLSPlain(i), pb.RLSApp(i))
		}
	}
	fmt.Fprintf(w, "participant check %s µs vs load all %s µs (%.1fx)\n", us(r.ParticipantCheck), us(r.LoadAllParticipants), float64(r.LoadAllParticipants)/float64(r.ParticipantCheck))
}

func us(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/float64(time.Microsecond)) }
