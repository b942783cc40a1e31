package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/spf13/cobra"
)

func newMigrateCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply, roll back or list schema migrations (as the owner role, never through PgBouncer)",
		Long: `migrate manages bulkhead's schema. "up" first creates or updates the roles,
the database and its privileges (idempotently; with --database-url that URL
must be a superuser or a CREATEROLE role), then applies pending migrations,
each in its own transaction. Two migrators at once serialise on a lock table.`,
	}
	run := func(f func(cmd *cobra.Command, env *dbEnv, m *postgres.Migrator) error, bootstrap bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			log, err := cfg.logger()
			if err != nil {
				return err
			}
			env, err := cfg.openEnv(cmd.Context(), log, startOwned)
			if err != nil {
				return err
			}
			defer env.close()
			if bootstrap {
				if err := postgres.Bootstrap(cmd.Context(), env.adminDSN, env.database, env.creds, env.cluster != nil); err != nil {
					return err
				}
			}
			m, err := postgres.NewMigrator(env.ownerDSN, nil)
			if err != nil {
				return err
			}
			defer m.Close()
			m.UseAdmin(env.adminDSN)
			return f(cmd, env, m)
		}
	}
	var to int64
	down := &cobra.Command{
		Use:   "down",
		Short: "Roll back the newest migration (or, with --to, down to that version)",
		Args:  cobra.NoArgs,
		RunE: run(func(cmd *cobra.Command, env *dbEnv, m *postgres.Migrator) error {
			if cmd.Flags().Changed("to") {
				res, err := m.DownTo(cmd.Context(), to)
				for _, r := range res {
					fmt.Fprintf(cmd.OutOrStdout(), "rolled back %d %s\n", r.Source.Version, r.Source.Path)
				}
				return err
			}
			r, err := m.Down(cmd.Context())
			if r != nil {
				fmt.Fprintf(cmd.OutOrStdout(), "rolled back %d %s\n", r.Source.Version, r.Source.Path)
			}
			return err
		}, false),
	}
	down.Flags().Int64Var(&to, "to", 0, "roll back to this version (0: everything)")
	cmd.AddCommand(
		&cobra.Command{
			Use:   "up",
			Short: "Create roles and database if needed, then apply pending migrations",
			Args:  cobra.NoArgs,
			RunE: run(func(cmd *cobra.Command, env *dbEnv, m *postgres.Migrator) error {
				res, err := m.Up(cmd.Context())
				for _, r := range res {
					fmt.Fprintf(cmd.OutOrStdout(), "applied %d %s (%s)\n", r.Source.Version, r.Source.Path, r.Duration.Round(1e6))
				}
				if err == nil && len(res) == 0 {
					fmt.Fprintln(cmd.OutOrStdout(), "no pending migrations")
				}
				return err
			}, true),
		},
		down,
		&cobra.Command{
			Use:   "status",
			Short: "List migrations and whether each is applied",
			Args:  cobra.NoArgs,
			RunE: run(func(cmd *cobra.Command, env *dbEnv, m *postgres.Migrator) error {
				st, err := m.Status(cmd.Context())
				if err != nil {
					return err
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "VERSION\tSTATE\tAPPLIED AT\tFILE")
				for _, s := range st {
					at := "-"
					if !s.AppliedAt.IsZero() {
						at = s.AppliedAt.Format("2006-01-02 15:04:05")
					}
					fmt.Fprintf(w, "%d\t%s\t%s\t%s\n", s.Source.Version, s.State, at, s.Source.Path)
				}
				return w.Flush()
			}, false),
		},
	)
	return cmd
}
