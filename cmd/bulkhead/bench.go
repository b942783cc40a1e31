package main

import (
	"bytes"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/bulkhead-dev/bulkhead/bench"
	"github.com/spf13/cobra"
)

func newBenchCmd(cfg *config) *cobra.Command {
	var cpuProfile string
	var profile *os.File
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure isolation costs against a baseline measured in the same run",
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// cobra runs only the nearest PersistentPreRunE: do the root's too.
			if err := bindEnv(cmd.Flags()); err != nil {
				return err
			}
			if cpuProfile == "" {
				return nil
			}
			f, err := os.Create(cpuProfile)
			if err != nil {
				return fmt.Errorf("cpu profile: %w", err)
			}
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
				return fmt.Errorf("cpu profile: %w", err)
			}
			profile = f
			return nil
		},
		PersistentPostRunE: func(cmd *cobra.Command, args []string) error {
			if profile == nil {
				return nil
			}
			pprof.StopCPUProfile()
			return profile.Close()
		},
	}
	cmd.PersistentFlags().StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the benchmark process (go tool pprof) to this file")
	var bc bench.Config
	var write string
	rlsCmd := &cobra.Command{
		Use:   "rls",
		Short: "RLS tax: point read, history page, participant check, append with policies vs without; round trips",
		Long: `bench rls starts its own throwaway PostgreSQL cluster (your data is never
touched), generates the dataset (by default 1,000 tenants and 1,000,000
memories), copies it, removes the policies from the copy, and runs the same
operations through the same code on both, interleaved. It prints the medians
and their ratio, the round trips per operation, the participant check
against loading a whole room, and the point read again measured by pgbench
(the server's own client, -M prepared) as a cross-check of the harness. With --write FILE it replaces the RLS section of
that markdown file (docs/BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bc.Progress = cmd.ErrOrStderr()
			res, err := bench.RunRLS(cmd.Context(), bc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if write == "" {
				return nil
			}
			var b bytes.Buffer
			command := fmt.Sprintf("bulkhead bench rls --tenants %d --memories %d --ops %d", bc.Tenants, bc.Memories, bc.Ops)
			res.Markdown(&b, command)
			return replaceSection(write, "## RLS tax", b.String())
		},
	}
	f := rlsCmd.Flags()
	f.IntVar(&bc.Tenants, "tenants", 1000, "tenants in the dataset")
	f.IntVar(&bc.Memories, "memories", 1_000_000, "memories in the dataset")
	f.IntVar(&bc.BigRoom, "big-room", 1000, "participants in the room used for the participant-check comparison")
	f.IntVar(&bc.Ops, "ops", 3000, "measured operations per case and side")
	f.IntVar(&bc.PGBenchRounds, "pgbench-rounds", 3, "rounds of the pgbench cross-check of the point read (negative: skip it)")
	f.IntVar(&bc.PGBenchSeconds, "pgbench-seconds", 4, "seconds per side and round of the pgbench cross-check")
	f.IntVar(&bc.PinPostgres, "pin-postgres", runtime.NumCPU()-1, "CPU that PostgreSQL's backends run on while measuring (negative: not pinned)")
	f.StringVar(&write, "write", "", "markdown file whose RLS section to replace with the results")
	var cc bench.CryptoConfig
	var cryptoWrite string
	cryptoCmd := &cobra.Command{
		Use:   "crypto",
		Short: "Field encryption: seal+open by size vs bare AES-GCM, agent create+get sealed vs plaintext, keyset cache hit rate",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cc.Progress = cmd.ErrOrStderr()
			res, err := bench.RunCrypto(cmd.Context(), cc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if cryptoWrite == "" {
				return nil
			}
			var b bytes.Buffer
			res.Markdown(&b, fmt.Sprintf("bulkhead bench crypto --ops %d --tenants %d", cc.Ops, cc.Tenants))
			return replaceSection(cryptoWrite, "## Field encryption", b.String())
		},
	}
	cryptoCmd.Flags().IntVar(&cc.Ops, "ops", 2000, "agent create+get pairs per side")
	cryptoCmd.Flags().IntVar(&cc.Tenants, "tenants", 2000, "tenants for the cache measurement")
	cryptoCmd.Flags().StringVar(&cryptoWrite, "write", "", "markdown file whose field-encryption section to replace")
	var ac bench.APIConfig
	var apiWrite string
	apiCmd := &cobra.Command{
		Use:   "api",
		Short: "HTTP API throughput and latency: full stack (JWT + signed context + RLS) vs fixed scope (RLS on) vs RLS bypassed, with an A/A control; reads during a login storm",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ac.Progress = cmd.ErrOrStderr()
			res, err := bench.RunAPI(cmd.Context(), ac)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if apiWrite == "" {
				return nil
			}
			var b bytes.Buffer
			res.Markdown(&b, fmt.Sprintf("bulkhead bench api --tenants %d --memories %d --clients %d --duration %s --rounds %d --pin-postgres %d", ac.Tenants, ac.Memories, ac.Clients, ac.Duration, ac.Rounds, ac.PinPostgres))
			return replaceSection(apiWrite, "## HTTP API", b.String())
		},
	}
	apiCmd.Flags().IntVar(&ac.Tenants, "tenants", 200, "tenants in the dataset")
	apiCmd.Flags().IntVar(&ac.Memories, "memories", 200_000, "memories in the dataset")
	apiCmd.Flags().IntVar(&ac.Clients, "clients", 32, "concurrent clients")
	apiCmd.Flags().DurationVar(&ac.Duration, "duration", 15*time.Second, "measuring time per side")
	apiCmd.Flags().IntVar(&ac.Rounds, "rounds", 5, "slices per side, the sides in a random order in each")
	apiCmd.Flags().IntVar(&ac.PinPostgres, "pin-postgres", -1, "CPU that PostgreSQL's backends run on while measuring (negative: not pinned, the default: clients, server and PostgreSQL load every core)")
	apiCmd.Flags().StringVar(&apiWrite, "write", "", "markdown file whose HTTP API section to replace")
	var vc bench.VectorConfig
	var vectorWrite string
	vectorCmd := &cobra.Command{
		Use:   "vector",
		Short: "Vector search: per-tenant collections vs one shared array with a tenant filter; exact scan throughput vs a plain SIMD scan",
		Long: `bench vector generates random unit vectors (seeded) owned by 811 tenants
(one at 10 %, ten at 1 %, 800 at 0.1 %), writes one collection per tenant
to an embedded store in a temporary directory (removed afterwards), and
answers the same queries through the Router and against one shared array
of all vectors filtered by tenant, interleaved. It prints latencies, their
ratio and recall@10 against a float64 brute force, then the embedded
Search's scan throughput against a plain SIMD dot scan of the same bytes.
With --write FILE it replaces the vector section of that markdown file
(docs/BENCHMARKS.md). Peak memory is about 16 bytes per vector element
(6.3 GB at the defaults); the run takes a few minutes.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			vc.Progress = cmd.ErrOrStderr()
			res, err := bench.RunVector(cmd.Context(), vc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if vectorWrite == "" {
				return nil
			}
			var b bytes.Buffer
			c := res.Config // after defaults
			res.Markdown(&b, fmt.Sprintf("bulkhead bench vector --vectors %d --dim %d --queries %d --seed %d", c.Vectors, c.Dim, c.Queries, c.Seed))
			return replaceSection(vectorWrite, "## Vector search", b.String())
		},
	}
	vectorCmd.Flags().IntVar(&vc.Vectors, "vectors", 1_000_000, "vectors across all tenants (a multiple of 1000)")
	vectorCmd.Flags().IntVar(&vc.Dim, "dim", 384, "vector dimension")
	vectorCmd.Flags().IntVar(&vc.Queries, "queries", 1000, "measured queries per tenant size and side")
	vectorCmd.Flags().Uint64Var(&vc.Seed, "seed", 1, "seed for the vectors, the tenant layout and the queries")
	vectorCmd.Flags().StringVar(&vectorWrite, "write", "", "markdown file whose vector section to replace")
	var rc bench.RetrievalConfig
	var retrievalWrite string
	retrievalCmd := &cobra.Command{
		Use:   "retrieval",
		Short: "Knowledge layer: ingest chunks/s vs rows only; /v1/query and /v1/answer latency vs a point read over HTTP",
		Long: `bench retrieval starts its own throwaway PostgreSQL cluster and an embedded
vector store in a temporary directory (both removed afterwards), with the
local embedder and no chat model. It ingests generated documents of about
4 KB (about 5 chunks each) through retrieval.Service.Ingest and the same
documents as rows only (postgres.DB.CreateDocument without embedding or
vectors), and embeds the same chunks alone, interleaved; then it measures
POST /v1/query and POST /v1/answer (k=5, extractive) against GET
/v1/documents/{id} through the HTTP server on loopback, interleaved. With
--write FILE it replaces the retrieval section of that markdown file
(docs/BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			rc.Progress = cmd.ErrOrStderr()
			res, err := bench.RunRetrieval(cmd.Context(), rc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			if retrievalWrite == "" {
				return nil
			}
			var b bytes.Buffer
			c := res.Config // after defaults
			res.Markdown(&b, fmt.Sprintf("bulkhead bench retrieval --tenants %d --docs %d --writers %d --clients %d --duration %s --seed %d", c.Tenants, c.Docs, c.Writers, c.Clients, c.Duration, c.Seed))
			return replaceSection(retrievalWrite, "## Retrieval", b.String())
		},
	}
	retrievalCmd.Flags().IntVar(&rc.Tenants, "tenants", 20, "tenants with a knowledge collection (as many more for the rows-only baseline)")
	retrievalCmd.Flags().IntVar(&rc.Docs, "docs", 200, "documents per tenant")
	retrievalCmd.Flags().IntVar(&rc.Writers, "writers", 4, "concurrent ingesting goroutines")
	retrievalCmd.Flags().IntVar(&rc.Clients, "clients", 4, "concurrent HTTP clients")
	retrievalCmd.Flags().DurationVar(&rc.Duration, "duration", 6*time.Second, "measuring time per HTTP side")
	retrievalCmd.Flags().Uint64Var(&rc.Seed, "seed", 1, "seed for the documents and queries")
	retrievalCmd.Flags().StringVar(&retrievalWrite, "write", "", "markdown file whose retrieval section to replace")
	var sc bench.SoakConfig
	var soakWrite, soakBench string
	soakCmd := &cobra.Command{
		Use:   "soak",
		Short: "Pooling soak: scoped and no-scope transactions from many clients over 1-4 server connections, every row checked",
		Long: `bench soak starts its own throwaway PostgreSQL cluster (and, for the
PgBouncer path, a real PgBouncer 1.18+ in transaction mode with no reset
query), seeds a few tenants, and drives --transactions transactions per
path from --clients concurrent clients over --pool-size server
connections: entity scopes (InScope and Read), tenant-only scopes and
no-scope queries, each on a random tenant and entity, so consecutive
transactions on a connection belong to different scopes. Every returned row
is checked against the exact set its scope may see. It prints
transactions/s, p50/p99, wrong-tenant rows and calls that saw a context
carried over, and exits 1 if either count, or any failed transaction, is
not zero. With --write FILE it replaces the pooling section of that
markdown file (docs/RELIABILITY.md); with --benchmarks FILE it replaces the
one-line pooling section there (docs/BENCHMARKS.md).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			sc.Progress = cmd.ErrOrStderr()
			bars := map[string]*progressBar{}
			var barsMu sync.Mutex // OnProgress runs on the clients' goroutines
			sc.OnProgress = func(path string, done, total int64) {
				barsMu.Lock()
				defer barsMu.Unlock()
				b := bars[path]
				if b == nil {
					b = newProgress(cmd.ErrOrStderr(), "soak "+path)
					bars[path] = b
				}
				b.update(done, total)
				if done == total {
					b.done()
				}
			}
			if sc.PoolSize < 1 || sc.PoolSize > 4 {
				return fmt.Errorf("--pool-size %d: want 1 to 4 server connections", sc.PoolSize)
			}
			res, err := bench.RunSoak(cmd.Context(), sc)
			if err != nil {
				return err
			}
			res.Table(cmd.OutOrStdout())
			command := fmt.Sprintf("bulkhead bench soak --transactions %d --clients %d --pool-size %d --through %s", sc.Transactions, sc.Clients, sc.PoolSize, sc.Through)
			if soakWrite != "" {
				var b bytes.Buffer
				res.Markdown(&b, command)
				if err := replaceSection(soakWrite, "## Pooling soak", b.String()); err != nil {
					return err
				}
			}
			if soakBench != "" {
				var b bytes.Buffer
				fmt.Fprintf(&b, "## Pooling soak (`%s`)\n\n", command)
				fmt.Fprintf(&b, "Measured %s:", time.Now().UTC().Format("2006-01-02"))
				for i, p := range res.Paths {
					if i > 0 {
						b.WriteString(";")
					}
					fmt.Fprintf(&b, " %s %.0f transactions/s (p50 %.1f ms, p99 %.1f ms), %d wrong-tenant rows, %d context carried over", p.Name, p.TPS(),
						float64(p.P50)/float64(time.Millisecond), float64(p.P99)/float64(time.Millisecond), p.WrongTenant, p.CarriedOver)
				}
				fmt.Fprintf(&b, ", %d clients over %d server connections. Details in [RELIABILITY.md](RELIABILITY.md#pooling-soak).\n\n", sc.Clients, sc.PoolSize)
				if err := replaceSection(soakBench, "## Pooling soak", b.String()); err != nil {
					return err
				}
			}
			if !res.Clean() {
				return fmt.Errorf("pooling soak: wrong-tenant rows, context carried over or failed transactions (see above)")
			}
			return nil
		},
	}
	soakCmd.Flags().IntVar(&sc.Transactions, "transactions", 1_000_000, "transactions per path")
	soakCmd.Flags().IntVar(&sc.Clients, "clients", 32, "concurrent clients")
	soakCmd.Flags().IntVar(&sc.PoolSize, "pool-size", 2, "server connections (1 to 4): pgxpool's size directly, PgBouncer's server pool through it")
	soakCmd.Flags().StringVar(&sc.Through, "through", "both", "path: direct (pgxpool), pgbouncer (transaction mode) or both")
	soakCmd.Flags().IntVar(&sc.Tenants, "tenants", 8, "tenants (10 users, 10 rooms of 5 each)")
	soakCmd.Flags().StringVar(&soakWrite, "write", "", "markdown file whose pooling section to replace (docs/RELIABILITY.md)")
	soakCmd.Flags().StringVar(&soakBench, "benchmarks", "", "markdown file whose one-line pooling section to replace (docs/BENCHMARKS.md)")
	cmd.AddCommand(rlsCmd, cryptoCmd, apiCmd, vectorCmd, retrievalCmd, soakCmd, newBenchTenantsCmd(), newBenchCrashCmd(), newBenchOverloadCmd())
	return cmd
}

// replaceSection replaces, in the markdown file at path, the section that
// starts with heading (up to the next "## ") with body, or appends it.
func replaceSection(path, heading, body string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	s := string(old)
	if s == "" {
		s = "# Benchmarks\n\nEvery figure here is a ratio against a baseline measured in the same run, produced by the command named in its section.\n\n"
	}
	if i := strings.Index(s, heading); i >= 0 {
		rest := s[i+len(heading):]
		end := len(s)
		if j := strings.Index(rest, "\n## "); j >= 0 {
			end = i + len(heading) + j + 1
		}
		s = s[:i] + body + s[end:]
	} else {
		s = strings.TrimRight(s, "\n") + "\n\n" + body
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
