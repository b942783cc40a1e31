package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
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
		Short: "Create, list, disable, delete, export and import tenants (control plane, as the maintenance role)",
	}
	var region string
	var asJSON, openRegistration bool
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a tenant (its keys and its knowledge collection) and print its id",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKnowledge(cmd, cfg, "cli: tenant create", func(ctx context.Context, db *postgres.DB, k knowledgeOps) error {
				t, err := k.CreateTenant(ctx, args[0], region)
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
	var force bool
	del := &cobra.Command{
		Use:   "delete ID [--force]",
		Short: "Delete a tenant and all of its data: collections dropped, keys shredded, rows deleted (idempotent)",
		Long: `delete drops the tenant's vector collections, destroys its keysets in the
database (its sealed values never open again there; backups taken before
still hold its wrapped keyset, see docs/OPERATIONS.md) and deletes its rows.

If the collections can't be dropped (the vector backend is unreachable, or
the tenant's region is no longer served), nothing is deleted unless --force:
then the tenant is deleted anyway and what was left is recorded with the
erasure (bulkhead_keys.key_events) and printed. A tenant that does not exist
is reported as such.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := bulkhead.ParseID("ID", args[0])
			if err != nil {
				return err
			}
			return withKnowledge(cmd, cfg, "cli: tenant delete "+id.String(), func(ctx context.Context, db *postgres.DB, k knowledgeOps) error {
				res, err := k.DeleteTenant(ctx, id, force)
				if err != nil {
					return err
				}
				switch {
				case !res.Deleted:
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s not found: nothing deleted\n", id)
				case len(res.NotCleaned) > 0:
					fmt.Fprintf(cmd.OutOrStdout(), "deleted tenant %s (keys shredded, rows deleted); NOT cleaned, recorded with the erasure: %s\n", id, strings.Join(res.NotCleaned, "; "))
				case force:
					fmt.Fprintf(cmd.OutOrStdout(), "deleted tenant %s (forced: anything left is in the server's log and bulkhead_keys.key_events)\n", id)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "deleted tenant %s and all of its data\n", id)
				}
				return nil
			})
		},
	}
	del.Flags().BoolVar(&force, "force", false, "delete even if the vector collections can't be dropped (recording what is left)")
	provision := &cobra.Command{
		Use:   "provision ID",
		Short: "Create the tenant's knowledge collection if it is missing (idempotent; finishes an interrupted create)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return tenantKnowledgeCmd(cmd, cfg, "provision", args[0], func(ctx context.Context, k knowledgeOps, id uuid.UUID) (any, error) {
				return "provisioned", k.Provision(ctx, id)
			})
		},
	}
	reconcile := &cobra.Command{
		Use:   "reconcile ID",
		Short: "Make the tenant's collection hold one vector per chunk: embed what is missing, remove orphans",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return tenantKnowledgeCmd(cmd, cfg, "reconcile", args[0], func(ctx context.Context, k knowledgeOps, id uuid.UUID) (any, error) {
				return k.Reconcile(ctx, id)
			})
		},
	}
	var model string
	reembed := &cobra.Command{
		Use:   "reembed ID --model MODEL",
		Short: "Re-embed the tenant with another model without downtime: build a new collection generation, switch, drop the old (resumable)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return tenantKnowledgeCmd(cmd, cfg, "reembed", args[0], func(ctx context.Context, k knowledgeOps, id uuid.UUID) (any, error) {
				return k.Reembed(ctx, id, model)
			})
		},
	}
	reembed.Flags().StringVar(&model, "model", "", "embedding model: local-lexical-v1, or openai:NAME for --embedding-model NAME")
	reembed.MarkFlagRequired("model")
	cmd.AddCommand(create, list, del, provision, reconcile, reembed, newTenantIssuerCmd(cfg))
	cmd.AddCommand(tenantAccessCmds(cfg)...)
	cmd.AddCommand(tenantTransferCmds(cfg)...)
	return cmd
}

// withKnowledge is withDB with the knowledge-layer operations too.
func withKnowledge(cmd *cobra.Command, cfg *config, reason string, f func(ctx context.Context, db *postgres.DB, k knowledgeOps) error) error {
	return withDB(cmd, cfg, reason, func(ctx context.Context, db *postgres.DB) error {
		log, err := cfg.logger()
		if err != nil {
			return err
		}
		k, done, err := cfg.knowledgeFor(db, log)
		if err != nil {
			return err
		}
		defer done()
		return f(ctx, db, k)
	})
}

// tenantKnowledgeCmd runs one knowledge operation on the tenant named by
// arg and prints its result as JSON.
func tenantKnowledgeCmd(cmd *cobra.Command, cfg *config, op, arg string, f func(ctx context.Context, k knowledgeOps, id uuid.UUID) (any, error)) error {
	id, err := bulkhead.ParseID("ID", arg)
	if err != nil {
		return err
	}
	return withKnowledge(cmd, cfg, "cli: tenant "+op+" "+id.String(), func(ctx context.Context, _ *postgres.DB, k knowledgeOps) error {
		res, err := f(ctx, k, id)
		if err != nil {
			return err
		}
		return printJSON(cmd.OutOrStdout(), res)
	})
}

func newEntityCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "entity",
		Short: "Provision, disable, delete entities (users, agents, external principals) of a tenant, end their sessions, issue password resets (control plane)",
	}
	var tenantID, kind, email, issuer, subject string
	var asJSON bool
	create := &cobra.Command{
		Use:   "create NAME --tenant ID [--kind user|agent|external] [--email E] [--issuer ISS --subject SUB]",
		Short: "Create an entity in a tenant and print its id (with --issuer and --subject: the id that subject's tokens name)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if issuer != "" || subject != "" {
				return linkExternal(cmd, cfg, bulkhead.EntityKind(kind), postgres.ExternalEntity{Name: args[0], Email: email, Issuer: issuer, Subject: subject}, tenantID, asJSON)
			}
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
	create.Flags().StringVar(&issuer, "issuer", "", "pre-link an external subject: its issuer (exact \"iss\")")
	create.Flags().StringVar(&subject, "subject", "", "pre-link an external subject: its \"sub\"")
	cmd.AddCommand(create, newEntityActiveCmd(cfg, false), newEntityActiveCmd(cfg, true))
	cmd.AddCommand(entityAccessCmds(cfg)...)
	return cmd
}
