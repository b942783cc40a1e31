package main

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead/bench"
	"github.com/spf13/cobra"
)

func newBenchOverloadCmd() *cobra.Command {
	var oc bench.OverloadConfig
	var write, logFile string
	cmd := &cobra.Command{
		Use:   "overload",
		Short: "Overload: the sustainable request rate, then 10× it for --duration; answers, p50/p99 and memory before, during and after",
		Long: `bench overload runs this binary as "bulkhead serve" on a throwaway data dir
with the embedded cluster (your data is never touched), creates --tenants
tenants through the control plane, and finds the sustainable request rate:
the highest closed-loop throughput (doubling the clients) whose p99 stays
under --p99 with only 2xx answers. It then sends requests open loop (on
schedule, whatever the answers) at that rate for --measure, at --factor
times it for --duration, and at that rate again for --measure, and reports
each phase's answers (only 2xx and 503/429 with Retry-After are expected; a
client timeout or anything else is a failure), p50 and p99, and serve's
peak RSS, heap, queue and requests in flight. It exits 1 if a guarantee
failed. With --write FILE it replaces the overload section of that markdown
file (docs/RELIABILITY.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			oc.Binary, oc.Progress = exe, cmd.ErrOrStderr()
			if logFile != "" {
				f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				oc.Log = f
			}
			res, err := bench.RunOverload(cmd.Context(), oc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if write != "" {
				command := fmt.Sprintf("bulkhead bench overload --duration %s --measure %s --factor %g --p99 %s --share %g --conns %d --tenants %d", oc.Duration, oc.Measure, oc.Factor, oc.P99Bound, oc.Share, oc.Conns, oc.Tenants)
				if len(oc.ServeArgs) > 0 {
					command += " --serve-args " + strings.Join(oc.ServeArgs, ",")
				}
				var b bytes.Buffer
				res.Markdown(&b, command)
				if err := replaceSection(write, "## Overload", b.String()); err != nil {
					return err
				}
			}
			if res.Failed() {
				return fmt.Errorf("bench overload: a guarantee failed (see above)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&oc.Duration, "duration", 30*time.Second, "length of the overload phase")
	f.DurationVar(&oc.Measure, "measure", 10*time.Second, "length of the before and after phases")
	f.Float64Var(&oc.Factor, "factor", 10, "overload rate as a multiple of the sustainable rate")
	f.DurationVar(&oc.P99Bound, "p99", 50*time.Millisecond, "p99 a rate must keep to count as sustainable")
	f.DurationVar(&oc.Deadline, "deadline", 10*time.Second, "each request's client deadline (an answer later than this is a timeout)")
	f.IntVar(&oc.Tenants, "tenants", 4, "tenants (one user each)")
	f.Float64Var(&oc.Share, "share", 0.8, "before and after phases' rate as a share of the sustainable rate")
	f.IntVar(&oc.Conns, "conns", 512, "the load generator's connections (and requests outstanding); a request due while all are busy is counted unsent")
	f.StringSliceVar(&oc.ServeArgs, "serve-args", nil, "extra flags for serve, e.g. --max-in-flight=16")
	f.StringVar(&logFile, "log", "", "write serve's log (JSON lines) to this file")
	f.StringVar(&write, "write", "", "markdown file whose overload section to replace (docs/RELIABILITY.md)")
	return cmd
}
