package main

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/bulkhead-dev/bulkhead/bench"
	"github.com/spf13/cobra"
)

func newBenchCrashCmd() *cobra.Command {
	var cc bench.CrashConfig
	var write string
	var duration time.Duration
	var logFile string
	cmd := &cobra.Command{
		Use:   "crash",
		Short: "PostgreSQL killed (SIGKILL) under a write load: answers during the outage, time to ready, acknowledged writes lost",
		Long: `bench crash runs this binary as "bulkhead serve" on a throwaway data dir
with the embedded cluster (your data is never touched), creates --tenants
tenants through the control plane and has --clients HTTP clients post
messages and documents as their users. Every --interval it kills the
postmaster with SIGKILL (--duration / --interval times); bulkhead restarts it.
It reports the answers by phase (only 2xx and 503 with Retry-After are
expected), how long PostgreSQL was down and how long /readyz took to answer
200 once PostgreSQL accepted connections (guarantee: 5 s), and whether every
acknowledged write is in the database exactly once. It exits 1 if an
acknowledged write was lost or duplicated, an answer was anything else, or
readiness took longer than 5 s. With --write FILE it replaces the crash
section of that markdown file (docs/RELIABILITY.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			if duration < cc.Interval {
				return fmt.Errorf("--duration %s is shorter than --interval %s", duration, cc.Interval)
			}
			cc.Binary, cc.Progress = exe, cmd.ErrOrStderr()
			cc.Kills = int(duration / cc.Interval)
			if logFile != "" {
				f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				cc.Log = f
			}
			res, err := bench.RunCrash(cmd.Context(), cc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if write != "" {
				var b bytes.Buffer
				res.Markdown(&b, fmt.Sprintf("bulkhead bench crash --duration %s --interval %s --clients %d --tenants %d", duration, cc.Interval, cc.Clients, cc.Tenants))
				if err := replaceSection(write, "## PostgreSQL killed under a write load", b.String()); err != nil {
					return err
				}
			}
			slow := false
			for _, k := range res.Kills {
				slow = slow || k.Ready > 5*time.Second
			}
			if res.Writes.Lost != 0 || res.Writes.Duplicated != 0 || res.Others() != 0 || slow || res.ServeRestarted || !res.Stopped {
				return fmt.Errorf("bench crash: a guarantee failed (see above)")
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.DurationVar(&duration, "duration", 30*time.Second, "load time before the last kill; PostgreSQL is killed every --interval within it")
	f.DurationVar(&cc.Interval, "interval", 10*time.Second, "load between kills")
	f.DurationVar(&cc.After, "after", 5*time.Second, "load after the last recovery")
	f.IntVar(&cc.Clients, "clients", 16, "concurrent HTTP clients")
	f.IntVar(&cc.Tenants, "tenants", 8, "tenants (one writing user each)")
	f.DurationVar(&cc.Deadline, "deadline", 10*time.Second, "each request's client deadline")
	f.StringVar(&logFile, "log", "", "write serve's log (JSON lines) to this file")
	f.StringVar(&write, "write", "", "markdown file whose crash section to replace (docs/RELIABILITY.md)")
	return cmd
}
