package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/spf13/cobra"
)

// tokenIssuer is the iss of bulkhead's own tokens.
const tokenIssuer = "bulkhead"

func (c *config) signer() (*token.Signer, error) {
	return token.LoadOrCreate(filepath.Join(c.dataDir, "token-key.json"), tokenIssuer)
}

func newTokenCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Mint bulkhead's own access tokens (operator bootstrap and scripting)",
	}
	var tenantID, entityID string
	var ttl time.Duration
	mint := &cobra.Command{
		Use:   "mint --tenant ID --entity ID [--ttl 15m]",
		Short: "Print an access token for an existing entity of a tenant, signed with bulkhead's key",
		Long: `mint prints a short-lived access token (an EdDSA-signed JWT, issuer "bulkhead",
audience "bulkhead") for an entity that exists in the tenant. Send it as
"Authorization: Bearer <token>". The signing key lives in DATA_DIR/token-key.json
(0600); its public half is served at /.well-known/jwks.json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("--tenant", tenantID)
			if err != nil {
				return err
			}
			entity, err := bulkhead.ParseID("--entity", entityID)
			if err != nil {
				return err
			}
			s, err := cfg.signer()
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: token mint checks the entity exists", func(ctx context.Context, db *postgres.DB) error {
				// The entity must exist in that tenant: ask the database in the tenant's own scope.
				sctx, err := bulkhead.WithScope(cmd.Context(), bulkhead.Scope{Tenant: tenant, Entity: entity})
				if err != nil {
					return err
				}
				if _, err := db.Entity(sctx, entity); err != nil {
					return fmt.Errorf("entity %s in tenant %s: %w", entity, tenant, err)
				}
				tok, exp, err := s.Mint(tenant, entity, ttl)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), tok)
				fmt.Fprintf(cmd.ErrOrStderr(), "expires %s\n", exp.UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	mint.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	mint.Flags().StringVar(&entityID, "entity", "", "entity id")
	mint.Flags().DurationVar(&ttl, "ttl", 15*time.Minute, "lifetime (at most 24h)")
	cmd.AddCommand(mint)
	return cmd
}
