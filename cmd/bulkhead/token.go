package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/auth"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/token"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// tokenIssuer is the iss of bulkhead's own tokens.
const tokenIssuer = "bulkhead"

func (c *config) signer() (*token.Signer, error) {
	return token.LoadOrCreate(filepath.Join(c.dataDir, "token-key.json"), tokenIssuer)
}

// withEntity runs f on the database with a context scoped to an entity
// that exists in the tenant (the database is asked in that tenant's own
// scope), for the operator commands that act for an entity.
func withEntity(cmd *cobra.Command, cfg *config, tenantID, entityID, reason string, f func(sctx context.Context, db *postgres.DB, tenant, entity uuid.UUID) error) error {
	tenant, err := bulkhead.ParseID("--tenant", tenantID)
	if err != nil {
		return err
	}
	entity, err := bulkhead.ParseID("--entity", entityID)
	if err != nil {
		return err
	}
	return withDB(cmd, cfg, reason, func(ctx context.Context, db *postgres.DB) error {
		sctx, err := bulkhead.WithScope(cmd.Context(), bulkhead.Scope{Tenant: tenant, Entity: entity})
		if err != nil {
			return err
		}
		if _, err := db.Entity(sctx, entity); err != nil {
			return fmt.Errorf("entity %s in tenant %s: %w", entity, tenant, err)
		}
		return f(sctx, db, tenant, entity)
	})
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
			s, err := cfg.signer()
			if err != nil {
				return err
			}
			return withEntity(cmd, cfg, tenantID, entityID, "cli: token mint checks the entity exists", func(_ context.Context, _ *postgres.DB, tenant, entity uuid.UUID) error {
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

// accounts builds the account service with the credential pepper kept in
// DATA_DIR/credential-pepper (32 random bytes, 0600, created on first use).
func (c *config) accounts(db *postgres.DB, signer *token.Signer) (*auth.Accounts, error) {
	path := filepath.Join(c.dataDir, "credential-pepper")
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b = make([]byte, 32)
		rand.Read(b)
		if err := os.WriteFile(path, b, 0o600); err != nil {
			return nil, fmt.Errorf("create credential pepper %s: %w", path, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("read credential pepper: %w", err)
	} else if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("credential pepper %s is accessible to others: chmod 600 %s", path, path)
	}
	return auth.NewAccounts(db, signer, auth.NewHasher(0), b)
}

func newAPIKeyCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{Use: "apikey", Short: "Create, list and revoke API keys of entities (operator)"}
	var tenantID, entityID, name string
	var scopes []string
	var ttl time.Duration
	var asJSON bool
	create := &cobra.Command{
		Use:   "create --tenant ID --entity ID [--name N] [--scope S]... [--ttl D]",
		Short: "Create an API key for an existing entity and print it (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			signer, err := cfg.signer()
			if err != nil {
				return err
			}
			return withEntity(cmd, cfg, tenantID, entityID, "cli: apikey create", func(sctx context.Context, db *postgres.DB, _, _ uuid.UUID) error {
				accounts, err := cfg.accounts(db, signer)
				if err != nil {
					return err
				}
				key, k, err := accounts.CreateAPIKey(sctx, name, scopes, ttl)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), map[string]any{"key": key, "id": k.ID, "entity_id": k.EntityID, "name": k.Name, "scopes": k.Scopes, "expires_at": k.ExpiresAt})
				}
				fmt.Fprintln(cmd.OutOrStdout(), key)
				return nil
			})
		},
	}
	create.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	create.Flags().StringVar(&entityID, "entity", "", "entity id")
	create.Flags().StringVar(&name, "name", "cli", "a name for the key")
	create.Flags().StringSliceVar(&scopes, "scope", nil, "scopes recorded with the key")
	create.Flags().DurationVar(&ttl, "ttl", 0, "lifetime (0: until revoked)")
	create.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(create)
	cmd.AddCommand(apiKeyAccessCmds(cfg)...)
	return cmd
}
