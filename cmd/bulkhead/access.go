package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

// Taking access away (control plane). Every command writes to the database
// directly, as the maintenance role, with an audit record; a running
// server needs no signal: each request's transaction checks the credential
// against the database (postgres.Access), so the change holds on every
// server from the next request on.

// tenantAccessCmds are `tenant disable|enable`.
func tenantAccessCmds(cfg *config) []*cobra.Command {
	set := func(disabled bool) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			id, err := bulkhead.ParseID("ID", args[0])
			if err != nil {
				return err
			}
			verb := map[bool]string{true: "disabled", false: "enabled"}[disabled]
			return withDB(cmd, cfg, "cli: tenant "+strings.TrimSuffix(verb, "d")+" "+id.String(), func(ctx context.Context, db *postgres.DB) error {
				if err := db.SetTenantDisabled(ctx, id, disabled); err != nil {
					return fmt.Errorf("tenant %s: %w", id, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s tenant %s\n", verb, id)
				return nil
			})
		}
	}
	return []*cobra.Command{
		{Use: "disable ID", Short: "Disable a tenant: every token, session and API key of it gets 401 from the next request on (reversible)", Args: cobra.ExactArgs(1), RunE: set(true)},
		{Use: "enable ID", Short: "Re-enable a disabled tenant", Args: cobra.ExactArgs(1), RunE: set(false)},
	}
}

// entityAccessCmds are `entity disable|enable|delete|revoke-sessions|password-reset`.
func entityAccessCmds(cfg *config) []*cobra.Command {
	var tenantID string
	// run parses --tenant and ENTITY and runs f on the maintenance path.
	run := func(op string, f func(cmd *cobra.Command, ctx context.Context, db *postgres.DB, tenant, entity uuid.UUID) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			tenant, err := bulkhead.ParseID("--tenant", tenantID)
			if err != nil {
				return err
			}
			entity, err := bulkhead.ParseID("ENTITY", args[0])
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: entity "+op+" "+entity.String(), func(ctx context.Context, db *postgres.DB) error {
				if err := f(cmd, ctx, db, tenant, entity); err != nil {
					return fmt.Errorf("entity %s in tenant %s: %w", entity, tenant, err)
				}
				return nil
			})
		}
	}
	setDisabled := func(disabled bool) func(*cobra.Command, context.Context, *postgres.DB, uuid.UUID, uuid.UUID) error {
		return func(cmd *cobra.Command, ctx context.Context, db *postgres.DB, tenant, entity uuid.UUID) error {
			if err := db.SetEntityDisabled(ctx, tenant, entity, disabled); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s entity %s\n", map[bool]string{true: "disabled", false: "enabled"}[disabled], entity)
			return nil
		}
	}
	disable := &cobra.Command{
		Use:   "disable ENTITY --tenant ID",
		Short: "Disable an entity: its tokens, sessions and API keys get 401, it can't log in or refresh (reversible)",
		Args:  cobra.ExactArgs(1),
		RunE:  run("disable", setDisabled(true)),
	}
	enable := &cobra.Command{
		Use:   "enable ENTITY --tenant ID",
		Short: "Re-enable an entity: its sessions and keys that were not revoked meanwhile work again",
		Args:  cobra.ExactArgs(1),
		RunE:  run("enable", setDisabled(false)),
	}
	del := &cobra.Command{
		Use:   "delete ENTITY --tenant ID",
		Short: "Delete an entity and everything it owns or wrote (its credentials die with it)",
		Long: `delete removes the entity and, by cascade, its login, API keys, refresh
tokens, agents, worlds, room memberships, memories and documents. Vectors of
its deleted documents stay in the tenant's collection until
"bulkhead tenant reconcile ID" removes them; retrieval already drops hits
whose chunk is gone.`,
		Args: cobra.ExactArgs(1),
		RunE: run("delete", func(cmd *cobra.Command, ctx context.Context, db *postgres.DB, tenant, entity uuid.UUID) error {
			if err := db.DeleteEntity(ctx, tenant, entity); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted entity %s and all of its data\n", entity)
			return nil
		}),
	}
	revoke := &cobra.Command{
		Use:   "revoke-sessions ENTITY --tenant ID",
		Short: "End every session of an entity: refresh tokens revoked, access tokens issued before now refused (API keys untouched)",
		Args:  cobra.ExactArgs(1),
		RunE: run("revoke-sessions", func(cmd *cobra.Command, ctx context.Context, db *postgres.DB, tenant, entity uuid.UUID) error {
			n, err := db.RevokeEntitySessions(ctx, tenant, entity)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked the sessions of entity %s (%d refresh tokens); its access tokens issued until now are refused\n", entity, n)
			return nil
		}),
	}
	var ttl time.Duration
	var asJSON bool
	reset := &cobra.Command{
		Use:   "password-reset ENTITY --tenant ID [--ttl 1h]",
		Short: "Issue a single-use password reset token for a user and print it (shown once; delivering it is yours)",
		Long: `password-reset prints a token the user redeems, once, before it expires, with
POST /v1/tenants/{tenant}/auth/password-reset {"token": ..., "new_password": ...}.
Issuing a new token replaces the previous one. Redeeming ends every session
of the user. The token is stored only as a keyed hash (the server's
credential pepper in DATA_DIR): run this on the host of the server's data
dir. It also sets the first password of a user created with --email.`,
		Args: cobra.ExactArgs(1),
		RunE: run("password-reset", func(cmd *cobra.Command, ctx context.Context, db *postgres.DB, tenant, entity uuid.UUID) error {
			signer, err := cfg.signer()
			if err != nil {
				return err
			}
			accounts, err := cfg.accounts(db, signer)
			if err != nil {
				return err
			}
			tok, exp, err := accounts.IssuePasswordReset(ctx, tenant, entity, ttl)
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(cmd.OutOrStdout(), map[string]any{"token": tok, "entity_id": entity, "expires_at": exp})
			}
			fmt.Fprintln(cmd.OutOrStdout(), tok)
			fmt.Fprintf(cmd.ErrOrStderr(), "expires %s\n", exp.UTC().Format(time.RFC3339))
			return nil
		}),
	}
	reset.Flags().DurationVar(&ttl, "ttl", time.Hour, "lifetime (1m to 168h)")
	reset.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmds := []*cobra.Command{disable, enable, del, revoke, reset}
	for _, c := range cmds {
		c.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	}
	return cmds
}

// apiKeyAccessCmds are `apikey list|revoke`.
func apiKeyAccessCmds(cfg *config) []*cobra.Command {
	var tenantID, entityID string
	var all, asJSON bool
	list := &cobra.Command{
		Use:   "list --tenant ID --entity ID",
		Short: "List an entity's API keys (ids, names, scopes, expiry, revocation; never secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			tenant, entity, err := tenantAndEntity(tenantID, entityID)
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: apikey list", func(ctx context.Context, db *postgres.DB) error {
				ks, err := db.EntityAPIKeys(ctx, tenant, entity)
				if err != nil {
					return fmt.Errorf("entity %s in tenant %s: %w", entity, tenant, err)
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), ks)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "ID\tNAME\tSCOPES\tCREATED\tREVOKED")
				for _, k := range ks {
					revoked := "-"
					if k.RevokedAt != nil {
						revoked = k.RevokedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Name, strings.Join(k.Scopes, ","), k.CreatedAt.UTC().Format(time.RFC3339), revoked)
				}
				return w.Flush()
			})
		},
	}
	list.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	list.Flags().StringVar(&entityID, "entity", "", "entity id")
	list.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	revoke := &cobra.Command{
		Use:   "revoke (KEY-ID --tenant ID | bhk_<tenant>_<id> | --all --tenant ID --entity ID)",
		Short: "Revoke an API key, whoever holds it, or every key of an entity",
		Long: `revoke takes a key's id with --tenant, or the public part of a leaked key,
"bhk_<tenant hex>_<id hex>" (leave the secret that follows off the command
line: it would show in ps and shell history). --all revokes every key of an
entity. A revoked key gets 401 from the next request on, on every server.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if all {
				if len(args) != 0 {
					return bulkhead.Invalid("--all", "takes no key")
				}
				tenant, entity, err := tenantAndEntity(tenantID, entityID)
				if err != nil {
					return err
				}
				return withDB(cmd, cfg, "cli: apikey revoke --all", func(ctx context.Context, db *postgres.DB) error {
					n, err := db.RevokeEntityAPIKeys(ctx, tenant, entity)
					if err != nil {
						return fmt.Errorf("entity %s in tenant %s: %w", entity, tenant, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "revoked %d API keys of entity %s\n", n, entity)
					return nil
				})
			}
			if len(args) != 1 {
				return bulkhead.Invalid("KEY", "a key id with --tenant, or bhk_<tenant>_<id>; or --all")
			}
			tenant, key, err := parseKeyRef(args[0], tenantID)
			if err != nil {
				return err
			}
			return withDB(cmd, cfg, "cli: apikey revoke "+key.String(), func(ctx context.Context, db *postgres.DB) error {
				if err := db.RevokeTenantAPIKey(ctx, tenant, key); err != nil {
					return fmt.Errorf("API key %s in tenant %s: %w", key, tenant, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "revoked API key %s\n", key)
				return nil
			})
		},
	}
	revoke.Flags().StringVar(&tenantID, "tenant", "", "tenant id")
	revoke.Flags().StringVar(&entityID, "entity", "", "entity id (with --all)")
	revoke.Flags().BoolVar(&all, "all", false, "revoke every key of --entity")
	return []*cobra.Command{list, revoke}
}

func tenantAndEntity(tenantID, entityID string) (uuid.UUID, uuid.UUID, error) {
	tenant, err := bulkhead.ParseID("--tenant", tenantID)
	if err != nil {
		return uuid.Nil, uuid.Nil, err
	}
	entity, err := bulkhead.ParseID("--entity", entityID)
	return tenant, entity, err
}

// parseKeyRef reads a key id (with tenantID) or a key's public part
// bhk_<tenant hex>_<id hex>, with or without the secret after it (which is
// ignored). A --tenant that contradicts the key's is refused.
func parseKeyRef(ref, tenantID string) (uuid.UUID, uuid.UUID, error) {
	if !strings.HasPrefix(ref, "bhk_") {
		tenant, err := bulkhead.ParseID("--tenant", tenantID)
		if err != nil {
			return uuid.Nil, uuid.Nil, err
		}
		key, err := bulkhead.ParseID("KEY", ref)
		return tenant, key, err
	}
	parts := strings.Split(ref, "_")
	bad := bulkhead.Invalid("KEY", "not bhk_<tenant hex>_<id hex>")
	if len(parts) < 3 || len(parts[1]) != 32 || len(parts[2]) != 32 {
		return uuid.Nil, uuid.Nil, bad
	}
	var ids [2]uuid.UUID
	for i, p := range parts[1:3] {
		b, err := hex.DecodeString(p)
		if err != nil {
			return uuid.Nil, uuid.Nil, bad
		}
		copy(ids[i][:], b)
	}
	if tenantID != "" {
		if t, err := bulkhead.ParseID("--tenant", tenantID); err != nil || t != ids[0] {
			return uuid.Nil, uuid.Nil, bulkhead.Invalid("--tenant", "differs from the key's tenant")
		}
	}
	return ids[0], ids[1], nil
}
