package main

import (
	"context"
	"fmt"
	"sort"
	"text/tabwriter"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/google/uuid"
	"github.com/spf13/cobra"
)

func newKeysCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "Per-tenant encryption keys: status, rotation, re-encryption, legacy sweep, KEK rotation",
		Long: `keys manages field encryption. Each tenant has its own random AES-256-GCM
keyset (and an HMAC PRF keyset for blind indexes), stored only wrapped by the
key-encryption key (KEK: --kek-file, default DATA_DIR/kek.json, or --kek-uri
for a KMS). Sealed columns: agents.secrets, agents.system_prompt,
documents.content_sealed, chunks.content_sealed.`,
	}
	var tenantFlag string
	var all, dryRun, asJSON, resume bool
	var batch int
	targets := func(ctx context.Context, db *postgres.DB) ([]bulkhead.Tenant, error) {
		if (tenantFlag == "") == !all {
			return nil, fmt.Errorf("name one tenant with --tenant ID, or all with --all")
		}
		if all {
			return db.ListTenants(ctx)
		}
		id, err := bulkhead.ParseID("--tenant", tenantFlag)
		if err != nil {
			return nil, err
		}
		t, err := db.TenantByID(ctx, id)
		return []bulkhead.Tenant{t}, err
	}

	status := &cobra.Command{
		Use:   "status",
		Short: "Show, per tenant, its keys and how many sealed values each key holds",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: keys status", func(ctx context.Context, db *postgres.DB) error {
				ts, err := db.ListTenants(ctx)
				if err != nil {
					return err
				}
				type row struct {
					Tenant    uuid.UUID        `json:"tenant"`
					Name      string           `json:"name"`
					Primary   uint32           `json:"primary_key"`
					Keys      []uint32         `json:"keys"`
					Values    map[uint32]int64 `json:"values_by_key"`
					Plaintext int64            `json:"plaintext_values"`
					Error     string           `json:"error,omitempty"`
				}
				var out []row
				for _, t := range ts {
					r := row{Tenant: t.ID, Name: t.Name}
					if st, err := db.Keyring().Status(ctx, t.ID); err != nil {
						r.Error = err.Error()
					} else {
						r.Primary, r.Keys = st.Primary, st.Keys
					}
					u, err := db.KeyUsage(ctx, t.ID)
					if err != nil {
						return err
					}
					r.Values, r.Plaintext = u.ByKey, u.Plaintext
					out = append(out, r)
				}
				if asJSON {
					return printJSON(cmd.OutOrStdout(), out)
				}
				w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
				fmt.Fprintln(w, "TENANT\tNAME\tPRIMARY\tKEYS\tVALUES BY KEY\tPLAINTEXT")
				for _, r := range out {
					keys := fmt.Sprint(r.Keys)
					if r.Error != "" {
						keys = "error: " + r.Error
					}
					ids := make([]uint32, 0, len(r.Values))
					for id := range r.Values {
						ids = append(ids, id)
					}
					sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
					var byKey string
					for _, id := range ids {
						byKey += fmt.Sprintf("%d:%d ", id, r.Values[id])
					}
					fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\t%d\n", r.Tenant, r.Name, r.Primary, keys, byKey, r.Plaintext)
				}
				return w.Flush()
			})
		},
	}
	status.Flags().BoolVar(&asJSON, "json", false, "print JSON")

	rotate := &cobra.Command{
		Use:   "rotate (--tenant ID | --all)",
		Short: "Add and promote a new key, re-encrypt every value under it (resumable), then retire unused keys",
		Long: `rotate adds a new AES-256-GCM key to each named tenant's keyset and makes it
primary, re-encrypts that tenant's sealed values in batches (each batch one
transaction; values keep opening at every step; after an interruption,
--resume finishes without adding another key), then retires the keys no
value uses any more. --dry-run only reports what would be re-encrypted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: keys rotate", func(ctx context.Context, db *postgres.DB) error {
				ts, err := targets(ctx, db)
				if err != nil {
					return err
				}
				for _, t := range ts {
					if dryRun {
						u, err := db.KeyUsage(ctx, t.ID)
						if err != nil {
							return err
						}
						var n int64
						for _, c := range u.ByKey {
							n += c
						}
						fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: would add a key and re-encrypt %d values (%d plaintext values need keys sweep)\n", t.ID, n, u.Plaintext)
						continue
					}
					if err := db.ProvisionKeys(ctx, t.ID); err != nil {
						return err
					}
					var id uint32
					if resume {
						st, err := db.Keyring().Status(ctx, t.ID)
						if err != nil {
							return err
						}
						id = st.Primary
					} else if id, err = db.Keyring().Rotate(ctx, t.ID); err != nil {
						return err
					}
					bar := newProgress(cmd.ErrOrStderr(), fmt.Sprintf("tenant %s re-encrypt", t.ID))
					done, err := db.Reencrypt(ctx, t.ID, batch, bar.update)
					bar.done()
					if err != nil {
						return fmt.Errorf("re-encrypt tenant %s (values still open; finish with keys rotate --resume): %w", t.ID, err)
					}
					retired, err := retireUnused(ctx, db, t.ID)
					if err != nil {
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: new primary key %d, %d values re-encrypted, retired keys %v\n", t.ID, id, done, retired)
				}
				return nil
			})
		},
	}
	sweep := &cobra.Command{
		Use:   "sweep (--tenant ID | --all)",
		Short: "Encrypt values written before encryption was enabled (and provision missing keys)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: keys sweep", func(ctx context.Context, db *postgres.DB) error {
				ts, err := targets(ctx, db)
				if err != nil {
					return err
				}
				for _, t := range ts {
					if dryRun {
						u, err := db.KeyUsage(ctx, t.ID)
						if err != nil {
							return err
						}
						fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: would seal %d plaintext values\n", t.ID, u.Plaintext)
						continue
					}
					bar := newProgress(cmd.ErrOrStderr(), fmt.Sprintf("tenant %s sweep", t.ID))
					n, err := db.Sweep(ctx, t.ID, batch, bar.update)
					bar.done()
					if err != nil {
						return fmt.Errorf("sweep tenant %s (run again to resume): %w", t.ID, err)
					}
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: sealed %d plaintext values\n", t.ID, n)
				}
				return nil
			})
		},
	}
	rotate.Flags().BoolVar(&resume, "resume", false, "add no key: finish re-encrypting to the current primary (after an interrupted rotation), then retire unused keys")
	for _, c := range []*cobra.Command{rotate, sweep} {
		c.Flags().StringVar(&tenantFlag, "tenant", "", "tenant id")
		c.Flags().BoolVar(&all, "all", false, "every tenant")
		c.Flags().BoolVar(&dryRun, "dry-run", false, "report what would change, change nothing")
		c.Flags().IntVar(&batch, "batch", 200, "values per transaction")
	}

	var toFile, toURI string
	rotateKEK := &cobra.Command{
		Use:   "rotate-kek (--to-file PATH | --to-uri URI)",
		Short: "Re-wrap every tenant's keysets under a new key-encryption key (data is not touched)",
		Long: `rotate-kek unwraps each tenant's keysets with the current KEK and wraps them
with the new one (a local file, created if missing, or a KMS key), records the
new KEK's check value, and tells you to restart with it. Resumable.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (toFile == "") == (toURI == "") {
				return fmt.Errorf("name the new key-encryption key with --to-file PATH or --to-uri URI")
			}
			return withEnv(cmd, cfg, "cli: keys rotate-kek", func(ctx context.Context, db *postgres.DB, env *dbEnv) error {
				var next *fieldcrypt.KEK
				var err error
				if toURI != "" {
					next, err = fieldcrypt.KMSKEK(ctx, toURI)
				} else {
					next, _, err = fieldcrypt.LocalKEK(toFile, true)
				}
				if err != nil {
					return err
				}
				bar := newProgress(cmd.ErrOrStderr(), "re-wrap keysets")
				err = db.Keyring().Rewrap(ctx, next, func(done, total int) { bar.update(int64(done), int64(total)) })
				bar.done()
				if err != nil {
					return err
				}
				if err := env.keys.SetKEK(ctx, next); err != nil {
					return err
				}
				flag := "--kek-file " + toFile
				if toURI != "" {
					flag = "--kek-uri " + toURI
				}
				fmt.Fprintf(cmd.OutOrStdout(), "every keyset is now wrapped by %s; restart bulkhead with %s (keep the old key until backups made before now expire)\n", next.ID(), flag)
				return nil
			})
		},
	}
	rotateKEK.Flags().StringVar(&toFile, "to-file", "", "new local KEK file (created if missing)")
	rotateKEK.Flags().StringVar(&toURI, "to-uri", "", "new KMS key URI")

	cmd.AddCommand(status, rotate, sweep, rotateKEK)
	return cmd
}

// retireUnused retires a tenant's keys that no sealed value uses.
func retireUnused(ctx context.Context, db *postgres.DB, tenant uuid.UUID) ([]uint32, error) {
	u, err := db.KeyUsage(ctx, tenant)
	if err != nil {
		return nil, err
	}
	inUse := map[uint32]bool{}
	for id, n := range u.ByKey {
		inUse[id] = n > 0
	}
	return db.Keyring().Retire(ctx, tenant, inUse)
}
