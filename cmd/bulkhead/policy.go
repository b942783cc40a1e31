package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/postgres/policylock"
	"github.com/bulkhead-dev/bulkhead/rls/model"
	"github.com/spf13/cobra"
)

func newPolicyCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Review the isolation rules",
	}
	var format string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print who may do what on every tenant table (table × command × caller), from the reference model",
		Long: `show prints the reference model's matrix: for each tenant table and each caller
relation of the model's fixture, the rows a SELECT returns and the writes
PostgreSQL accepts. It needs no database: it is the model the verifier
compares the generated policies with. docs/POLICIES.md is its markdown form.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ms := model.Matrix(postgres.Tables, model.NewFixture(time.Now()))
			switch format {
			case "markdown":
				return model.WriteMarkdown(cmd.OutOrStdout(), ms)
			case "json":
				return model.WriteJSON(cmd.OutOrStdout(), ms)
			}
			return fmt.Errorf("--format %q: want markdown or json", format)
		},
	}
	show.Flags().StringVar(&format, "format", "markdown", "markdown or json")
	cmd.AddCommand(show, newPolicyLockCmd(cfg), newPolicyCheckCmd(cfg))
	return cmd
}

// lockSource is where lock and check read the policies from.
type lockSource struct {
	migrations string
	lockFile   string
	noMatrix   bool
}

func (s *lockSource) register(cmd *cobra.Command) {
	f := cmd.Flags()
	f.StringVar(&s.migrations, "migrations", "", "apply the goose *.sql migrations in this directory to a throwaway PostgreSQL (started from the local binaries) and read that, instead of --database-url")
	f.StringVar(&s.lockFile, "lock", "policies.lock", "the lock file")
	f.BoolVar(&s.noMatrix, "no-matrix", false, "leave out the visibility matrix (it needs bulkhead's schema, a superuser URL and --context-key-file on a live database)")
}

// read returns the current state from the migrations or the database.
func (s *lockSource) read(cmd *cobra.Command, cfg *config) (*policylock.Lock, error) {
	opts := policylock.Options{Matrix: !s.noMatrix}
	log, err := cfg.logger()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Minute)
	defer cancel()
	switch {
	case s.migrations != "" && cmd.Flags().Changed("database-url"):
		return nil, errors.New("give --migrations or --database-url, not both")
	case s.migrations != "":
		if _, err := os.Stat(s.migrations); err != nil {
			return nil, fmt.Errorf("--migrations: %w", err)
		}
		fmt.Fprintf(cmd.ErrOrStderr(), "applying %s to a throwaway PostgreSQL…\n", s.migrations)
		opts.Log = log
		return policylock.FromMigrations(ctx, s.migrations, opts)
	case cfg.databaseURL != "":
		if opts.Matrix && cfg.contextKey != "" {
			opts.ContextKey, err = postgres.LoadContextKey(cfg.contextKey)
			if err != nil {
				return nil, err
			}
		}
		return policylock.FromURL(ctx, cfg.databaseURL, opts)
	}
	return nil, errors.New("say what to read: --migrations DIR (applied to a throwaway PostgreSQL) or --database-url URL")
}

func newPolicyLockCmd(cfg *config) *cobra.Command {
	var src lockSource
	cmd := &cobra.Command{
		Use:   "lock",
		Short: "Write policies.lock: the policies, grants, definer functions and visibility matrix a database enforces",
		Long: `lock records what a database enforces in a file to review like code: every
table with row-level security (flags, owner), its policies as PostgreSQL
deparses them, grants, SECURITY DEFINER functions, and the visibility matrix
of bulkhead's schema (every caller relation of the reference model's fixture
running every statement shape as the runtime role, rolled back).

It reads a migrations directory applied to a throwaway PostgreSQL
(--migrations postgres/migrations: what CI uses, make policy-lock) or a live
database (--database-url; the matrix then needs a superuser URL and
--context-key-file, or --no-matrix). It never writes to the database.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			l, err := src.read(cmd, cfg)
			if err != nil {
				return err
			}
			b, err := l.Marshal()
			if err != nil {
				return err
			}
			if err := os.WriteFile(src.lockFile, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: %d tables, %d policies, %d grants, %d definer functions, %d functions policies call, %d matrix tables\n",
				src.lockFile, len(l.Tables), len(l.Policies), len(l.Grants), len(l.Definers), len(l.PolicyFunctions), len(l.Matrix))
			return nil
		},
	}
	src.register(cmd)
	return cmd
}

func newPolicyCheckCmd(cfg *config) *cobra.Command {
	var src lockSource
	cmd := &cobra.Command{
		Use:   "check",
		Short: "Fail (exit 1) when the policies differ from policies.lock, and print the difference",
		Long: `check reads the same state as lock (from --migrations or --database-url)
and compares it with the lock file. Every difference is printed, the matrix
as "table / COMMAND / caller [relation]: row: before → after"; any difference
exits 1 (2 when the state could not be read). If the change is intended,
regenerate the lock (make policy-lock) and commit it: the lock diff is what
review sees.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			locked, err := policylock.Load(src.lockFile)
			if err != nil {
				return fmt.Errorf("%w (make one with bulkhead policy lock)", err)
			}
			cur, err := src.read(cmd, cfg)
			if err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "bulkhead: policy check:", err)
				return exitError{2}
			}
			diff := policylock.Compare(locked, cur)
			w := cmd.OutOrStdout()
			if len(diff) == 0 {
				fmt.Fprintf(w, "policy check: matches %s (%d tables, %d policies, %d grants, %d definer functions, %d functions policies call, %d matrix tables)\n",
					src.lockFile, len(cur.Tables), len(cur.Policies), len(cur.Grants), len(cur.Definers), len(cur.PolicyFunctions), len(cur.Matrix))
				return nil
			}
			fmt.Fprintf(w, "policy check: %d differences from %s:\n", len(diff), src.lockFile)
			for _, d := range diff {
				fmt.Fprintln(w, "  "+d)
			}
			fmt.Fprintln(w, "If this change is intended, regenerate the lock (make policy-lock) and commit it with the change.")
			return exitError{1}
		},
	}
	src.register(cmd)
	return cmd
}
