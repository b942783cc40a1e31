package main

import (
	"bytes"
	"fmt"
	"time"

	"github.com/bulkhead-dev/bulkhead/bench"
	"github.com/spf13/cobra"
)

func newBenchTenantsCmd() *cobra.Command {
	var tc bench.TenantsConfig
	var write string
	cmd := &cobra.Command{
		Use:   "tenants",
		Short: "Many tenants on one node: store start-up, cold-tenant first query, Zipf query load with the memory budget at a share of all collections",
		Long: `bench tenants starts its own throwaway PostgreSQL cluster and an embedded
vector store (both removed afterwards), creates --tenants tenants through the
knowledge layer (a collection each) with --docs documents each, then, in
process: times the store's start-up with every collection on disk and with
1 % of them; reopens it with a memory budget of --budget-share of what all
collections take; times the first query of --cold tenants whose collection
is on disk only, and the same query again; and runs a Zipf-distributed
query load (--zipf, --clients, --duration). Every query must return its
tenant's marker document: the command fails if one doesn't. With --write
FILE it replaces the many-tenants section of that markdown file
(docs/BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tc.Progress = cmd.ErrOrStderr()
			res, err := bench.RunTenants(cmd.Context(), tc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if write == "" {
				return nil
			}
			var b bytes.Buffer
			c := res.Config // after defaults
			res.Markdown(&b, fmt.Sprintf("bulkhead bench tenants --tenants %d --docs %d --writers %d --clients %d --duration %s --zipf %g --budget-share %g --cold %d --seed %d",
				c.Tenants, c.Docs, c.Writers, c.Clients, c.Duration, c.Zipf, c.BudgetShare, c.Cold, c.Seed))
			return replaceSection(write, "## Many tenants on one node", b.String())
		},
	}
	f := cmd.Flags()
	f.IntVar(&tc.Tenants, "tenants", 10000, "tenants, each with a vector collection")
	f.IntVar(&tc.Docs, "docs", 2, "documents of about 4 KB (5 chunks) per tenant")
	f.IntVar(&tc.Writers, "writers", 4, "concurrent goroutines creating tenants and ingesting")
	f.IntVar(&tc.Clients, "clients", 4, "concurrent query clients under the Zipf load")
	f.DurationVar(&tc.Duration, "duration", 20*time.Second, "length of the Zipf load")
	f.Float64Var(&tc.Zipf, "zipf", 1.1, "the load's Zipf exponent s (> 1): tenant of rank r is queried with probability ∝ 1/r^s")
	f.Float64Var(&tc.BudgetShare, "budget-share", 0.10, "the store's memory budget as a share of what all collections take")
	f.IntVar(&tc.Cold, "cold", 200, "tenants whose first query (collection on disk only) is timed")
	f.Uint64Var(&tc.Seed, "seed", 1, "seed for the documents and the load")
	f.StringVar(&write, "write", "", "markdown file whose many-tenants section to replace")
	return cmd
}
