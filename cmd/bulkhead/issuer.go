package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/spf13/cobra"
)

// External identity on the control plane (issue 13): the issuers a tenant
// registered, pre-linked external subjects, deactivation.

func newTenantIssuerCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "issuer",
		Short: "Register external token issuers with a tenant (binding, just-in-time entities)",
		Long: `An external issuer trusted with a tenant claim (tenant_claim in --auth-config)
speaks only for the tenants that registered it: a token naming any other
tenant is refused (401; the reason, issuer_not_bound, is in the server's log
and in bulkhead_auth_failures_total). An issuer with a fixed "tenant" in
--auth-config needs no registration for that tenant.

--jit lets the issuer's first valid token for an unknown subject create the
subject's entity (kind user; name and email from the issuer's name_claim and
email_claim), recorded in audit_log. Without it, pre-link subjects with
bulkhead entity create --issuer ISS --subject SUB.`,
	}
	var jit bool
	add := &cobra.Command{
		Use:   "add TENANT ISSUER [--jit]",
		Short: "Register ISSUER (its exact \"iss\") with TENANT; again to change --jit",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("TENANT", args[0])
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: tenant issuer add", func(ctx context.Context, db *postgres.DB) error {
				ti, err := db.AddTenantIssuer(ctx, tenant, args[1], jit)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s trusts issuer %s (just-in-time entities: %v)\n", tenant, ti.Issuer, ti.JIT)
				return nil
			})
		},
	}
	add.Flags().BoolVar(&jit, "jit", false, "create the entity of an unknown subject on its first valid token")
	var asJSON bool
	list := &cobra.Command{
		Use:   "list TENANT",
		Short: "List the issuers TENANT registered",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("TENANT", args[0])
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: tenant issuer list", func(ctx context.Context, db *postgres.DB) error {
				is, err := db.TenantIssuers(ctx, tenant)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), is)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ISSUER\tJIT\tADDED")
				for _, i := range is {
					fmt.Fprintf(w, "%s\t%v\t%s\n", i.Issuer, i.JIT, i.AddedAt.Format("2006-01-02 15:04:05"))
				}
				return w.Flush()
			})
		},
	}
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	remove := &cobra.Command{
		Use:   "remove TENANT ISSUER",
		Short: "Unregister ISSUER: its tokens no longer name TENANT (entities it created stay)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("TENANT", args[0])
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: tenant issuer remove", func(ctx context.Context, db *postgres.DB) error {
				if err := db.RemoveTenantIssuer(ctx, tenant, args[1]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "tenant %s no longer trusts issuer %s\n", tenant, args[1])
				return nil
			})
		},
	}
	cmd.AddCommand(add, list, remove)
	return cmd
}

// linkExternal is entity create for an external subject.
func linkExternal(cmd *cobra.Command, cfg *config, kind bulkhead.EntityKind, x postgres.ExternalEntity, tenantID string, asJSON bool) error {
	t, err := bulkhead.ParseID("--tenant", tenantID)
	if err != nil {
		return err
	}
	if x.Issuer == "" || x.Subject == "" {
		return fmt.Errorf("--issuer and --subject go together")
	}
	x.Kind = kind
	x.ID = auth.EntityID(x.Issuer, x.Subject)
	return withDB(cmd, cfg, "cli: entity create (external)", func(ctx context.Context, db *postgres.DB) error {
		e, err := db.LinkEntity(ctx, t, x)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(cmd.OutOrStdout(), e)
		}
		fmt.Fprintf(cmd.OutOrStdout(), "created %s %s (%s) in tenant %s for subject %q of %s\n", e.Kind, e.ID, e.Name, t, x.Subject, x.Issuer)
		return nil
	})
}

func newEntityActiveCmd(cfg *config, active bool) *cobra.Command {
	use, short := "deactivate ID --tenant TENANT", "Deactivate an entity: its external tokens are refused even while unexpired"
	if active {
		use, short = "activate ID --tenant TENANT", "Reactivate a deactivated entity"
	}
	var tenantID string
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("--tenant", tenantID)
			if err != nil {
				return err
			}
			id, err := bulkhead.ParseID("ID", args[0])
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: entity "+cmd.Name(), func(ctx context.Context, db *postgres.DB) error {
				if err := db.SetEntityActive(ctx, tenant, id, active); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "entity %s %sd\n", id, cmd.Name())
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	return cmd
}
