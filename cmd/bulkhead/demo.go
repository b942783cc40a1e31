package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
)

func newDemoCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Seed a two-tenant example and show what each entity can see",
	}
	var asJSON bool
	seed := &cobra.Command{
		Use:   "seed",
		Short: "Create two tenants, each with Alice, Bob, Charlie, an agent, rooms, memories and documents",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withKnowledge(cmd, cfg, "cli: demo seed", func(ctx context.Context, db *postgres.DB, k knowledgeOps) error {
				d, err := postgres.SeedDemo(ctx, db, "demo-")
				if err != nil {
					return err
				}
				// The fixture writes rows only: give each tenant its
				// collection and index the documents.
				for _, t := range []uuid.UUID{d.T1.Tenant.ID, d.T2.Tenant.ID} {
					if err := k.Provision(ctx, t); err != nil {
						return err
					}
					if _, err := k.Reconcile(ctx, t); err != nil {
						return err
					}
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), d)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "seeded tenants %s (%s) and %s (%s); run: bulkhead demo show\n", d.T1.Tenant.ID, d.T1.Tenant.Name, d.T2.Tenant.ID, d.T2.Tenant.Name)
				return nil
			})
		},
	}
	seed.Flags().BoolVar(&asJSON, "json", false, "print every id created, as JSON")
	show := &cobra.Command{
		Use:   "show",
		Short: "Print, per tenant and entity, the rooms, messages and documents it can see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: demo show (lists tenants and entities)", func(ctx context.Context, db *postgres.DB) error {
				return demoShow(ctx, cmd.Context(), cmd, db)
			})
		},
	}
	cmd.AddCommand(seed, show)
	return cmd
}

// demoShow lists tenants and their entities on the maintenance path, then
// asks the database, in each entity's own scope, what it sees.
// plain is a context without the maintenance mark, for the scoped reads.
func demoShow(ctx, plain context.Context, cmd *cobra.Command, db *postgres.DB) error {
	w := cmd.OutOrStdout()
	tenants, err := db.ListTenants(ctx)
	if err != nil {
		return err
	}
	if len(tenants) == 0 {
		fmt.Fprintln(w, "no tenants: run bulkhead demo seed first")
		return nil
	}
	for _, t := range tenants {
		fmt.Fprintf(w, "tenant %s (%s)\n", t.Name, t.ID)
		var ents []bulkhead.Entity
		err := db.InMaintenance(ctx, func(tx pgx.Tx) error {
			rows, err := tx.Query(ctx, `SELECT id, kind, name, created_at FROM bulkhead.entities WHERE tenant_id = $1 ORDER BY kind DESC, name`, t.ID)
			if err != nil {
				return err
			}
			ents, err = pgx.CollectRows(rows, pgx.RowToStructByPos[bulkhead.Entity])
			return err
		})
		if err != nil {
			return err
		}
		for _, e := range ents {
			sctx, err := bulkhead.WithScope(plain, bulkhead.Scope{Tenant: t.ID, Entity: e.ID})
			if err != nil {
				return err
			}
			rooms, _, err := db.ListRooms(sctx, postgres.Page{Limit: 100})
			if err != nil {
				return err
			}
			var roomNames []string
			messages := 0
			for _, r := range rooms {
				roomNames = append(roomNames, r.Name)
				h, _, err := db.RoomHistory(sctx, r.ID, postgres.Page{Limit: 500})
				if err != nil {
					return err
				}
				messages += len(h)
			}
			docs, _, err := db.ListDocuments(sctx, postgres.Page{Limit: 100})
			if err != nil {
				return err
			}
			var docNames []string
			for _, d := range docs {
				docNames = append(docNames, fmt.Sprintf("%s [%s]", d.Title, d.Visibility))
			}
			fmt.Fprintf(w, "  %-8s %-16s rooms: %-20s messages: %-3d documents: %s\n", e.Kind, e.Name, orNone(roomNames), messages, orNone(docNames))
		}
	}
	fmt.Fprintln(w, "(every line was read as the runtime role in that entity's scope; row-level security decided what it holds)")
	return nil
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ", ")
}
