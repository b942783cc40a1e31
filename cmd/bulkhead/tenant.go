package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/spf13/cobra"
)

// withDB runs f with the server's pools on a migrated database (starting
// the embedded cluster for the duration if needed) and a context allowed to
// take the maintenance path for reason.
func withDB(cmd *cobra.Command, cfg *config, reason string, f func(ctx context.Context, db *postgres.DB) error) error {
	return withEnv(cmd, cfg, reason, func(ctx context.Context, db *postgres.DB, _ *dbEnv) error { return f(ctx, db) })
}

// withEnv is withDB that also hands over the environment (the key store).
func withEnv(cmd *cobra.Command, cfg *config, reason string, f func(ctx context.Context, db *postgres.DB, env *dbEnv) error) error {
	log, err := cfg.logger()
	if err != nil {
		return err
	}
	ctx := cmd.Context()
	env, err := cfg.openEnv(ctx, log, startOwned)
	if err != nil {
		return err
	}
	defer env.close()
	if err := env.migrate(ctx, log); err != nil {
		return err
	}
	db, err := env.openDB(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(bulkhead.AsMaintenance(ctx, reason), db, env)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func newTenantCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Create, list and delete tenants (control plane, as the maintenance role)",
	}
	var region string
	var asJSON, openRegistration bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant and print its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: tenant create", func(ctx context.Context, db *postgres.DB) error {
				t, err := db.CreateTenant(ctx, args[0], region)
				if err != nil {
					return err
				}
				if openRegistration {
					if err := db.SetOpenRegistration(ctx, t.ID, true); err != nil {
						return err
					}
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), t)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created tenant %s (%s, region %s)\n", t.ID, t.Name, t.Region)
				return nil
			})
		},
	}
	create.Flags().StringVar(&region, "region", "", "region holding the tenant's data (default \"default\")")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	create.Flags().BoolVar(&openRegistration, "open-registration", false, "let anyone register an account in the tenant (POST /v1/tenants/{id}/auth/register)")
	var listJSON bool
	list := &cobra.Command{
		Use:   "list",
		Short: "List tenants",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: tenant list", func(ctx context.Context, db *postgres.DB) error {
				ts, err := db.ListTenants(ctx)
				if err != nil {
					return err
				}
				if listJSON {
					if ts == nil {
						ts = []bulkhead.Tenant{}
					}
					return printJSON(cmd.OutOrStdout(), ts)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tNAME\tREGION\tCREATED")
				for _, t := range ts {
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.ID, t.Name, t.Region, t.CreatedAt.Format("2006-01-02 15:04:05"))
				}
				return w.Flush()
			})
		},
	}
	list.Flags().BoolVar(&listJSON, "json", false, "print JSON")
	del := &cobra.Command{
		Use:   "delete ID",
		Short: "Delete a tenant and all of its data (idempotent)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := bulkhead.ParseID("ID", args[0])
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: tenant delete "+id.String(), func(ctx context.Context, db *postgres.DB) error {
				deleted, err := db.DeleteTenant(ctx, id)
				if err != nil {
					return err
				}
				if deleted {
					fmt.Fprintf(cmd.OutOrStdout(), "deleted tenant %s and all of its data\n", id)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s does not exist (nothing to delete)\n", id)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, del)
	return cmd
}

func newEntityCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "entity",
		Short: "Provision entities (users, agents, external principals) in a tenant (control plane)",
	}
	var tenantID, kind, email string
	var asJSON bool
	create := &cobra.Command{
		Use:   "create NAME --tenant ID [--kind user|agent|external] [--email E]",
		Short: "Create an entity in a tenant and print its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("--tenant", tenantID)
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: entity create", func(ctx context.Context, db *postgres.DB) error {
				e, err := db.CreateEntity(ctx, tenant, bulkhead.EntityKind(kind), args[0], email)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), e)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created %s %s (%s) in tenant %s\n", e.Kind, e.ID, e.Name, tenant)
				return nil
			})
		},
	}
	create.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	create.Flags().StringVar(&kind, "kind", "user", "user, agent or external")
	create.Flags().StringVar(&email, "email", "", "login email of a user")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(create)
	return cmd
}
