package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
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
					Hierarchy string           `json:"hierarchy,omitempty"`
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
						r.Primary, r.Keys, r.Hierarchy = st.Primary, st.Keys, string(st.Hierarchy)
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
				fmt.Fprintln(w, "TENANT\tNAME\tWRAPPED BY\tPRIMARY\tKEYS\tVALUES BY KEY\tPLAINTEXT")
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
					fmt.Fprintf(w, "%s\t%s\t%s\t%d\t%s\t%s\t%d\n", r.Tenant, r.Name, r.Hierarchy, r.Primary, keys, byKey, r.Plaintext)
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
value uses any more. --dry-run only reports what would be re-encrypted.

It is safe with any number of servers running: the new key's version is
published in the database, every server checks it in the transaction that
writes a sealed value (and reloads its keys when it is stale), and the
rotation waits for older transactions to end before it re-encrypts and
retires. A value that does not open is reported and skipped (its key is
kept); one tenant's failure does not stop the others. See docs/OPERATIONS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: keys rotate", func(ctx context.Context, db *postgres.DB) error {
				ts, err := targets(ctx, db)
				if err != nil {
					return err
				}
				failed := 0
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
					bar := newProgress(cmd.ErrOrStderr(), fmt.Sprintf("tenant %s re-encrypt", t.ID))
					res, err := db.RotateKeys(ctx, t.ID, resume, batch, bar.update)
					bar.done()
					if err != nil {
						// One tenant's failure does not stop the others.
						failed++
						fmt.Fprintf(cmd.ErrOrStderr(), "tenant %s: rotation not finished (values still open; finish with keys rotate --resume --tenant %s): %v\n", t.ID, t.ID, err)
						continue
					}
					fmt.Fprintf(cmd.OutOrStdout(), "tenant %s: new primary key %d, %d values re-encrypted, retired keys %v\n", t.ID, res.Primary, res.Reencrypted, res.Retired)
				}
				if failed > 0 {
					return fmt.Errorf("%d of %d tenants not rotated (see above)", failed, len(ts))
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
		Short: "Re-wrap every tenant's keysets under a new key-encryption key (data is not touched; servers may keep running)",
		Long: `rotate-kek makes a new key-encryption key the database's KEK: it records
the new KEK first (a local file, created if missing, or a KMS key), so that no
process can store a keyset wrapped by the old one any more, then unwraps each
tenant's keysets and wraps them with the new one.

Running servers follow without a restart: they load the new KEK from where
it is recorded (the file path or the URI) the first time they meet it, so the
file must be readable at the same path by every server (or use a KMS). A
keyset that does not unwrap fails only its tenant (listed; exit status 1);
the others are re-wrapped. Resumable (an interrupted or killed run leaves
every keyset wrapped by the old or the new KEK): run the same command again
with the old KEK configured, as the first run had it; keysets already
re-wrapped are skipped. Until it has finished, a server that was running
keeps serving every tenant, but a server started anew can't (with the old
KEK it refuses to start, with the new one the tenants not re-wrapped yet
fail). Afterwards start bulkhead with the new KEK
(--kek-file / --kek-uri); keep the old one until backups made before now
expire. See docs/OPERATIONS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (toFile == "") == (toURI == "") {
				return fmt.Errorf("name the new key-encryption key with --to-file PATH or --to-uri URI")
			}
			var next *fieldcrypt.KEK
			var err error
			ref := toURI
			if toURI != "" {
				next, err = fieldcrypt.KMSKEK(cmd.Context(), toURI, cfg.kekTimeout)
			} else {
				if ref, err = filepath.Abs(toFile); err != nil {
					return err
				}
				next, _, err = fieldcrypt.LocalKEK(ref, true)
			}
			if err != nil {
				return err
			}
			cfg.nextKEK = next // an interrupted run resumes with either KEK configured
			return withEnv(cmd, cfg, "cli: keys rotate-kek", func(ctx context.Context, db *postgres.DB, env *dbEnv) error {
				bar := newProgress(cmd.ErrOrStderr(), "re-wrap keysets")
				rep, err := db.Keyring().Rewrap(ctx, next, ref, func(done, total int) { bar.update(int64(done), int64(total)) })
				bar.done()
				if err != nil {
					return err
				}
				for t, err := range rep.Failed {
					fmt.Fprintf(cmd.ErrOrStderr(), "tenant %s: keyset not re-wrapped: %v\n", t, err)
				}
				flag := "--kek-file " + ref
				if toURI != "" {
					flag = "--kek-uri " + toURI
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s is the key-encryption key: %d keysets re-wrapped, %d already were, %d failed; running servers load it by themselves; start bulkhead with %s from now on (keep the old key until backups made before now expire)\n",
					next.ID(), rep.Rewrapped, rep.Skipped, len(rep.Failed), flag)
				if len(rep.Failed) > 0 {
					for _, err := range rep.Failed {
						if errors.Is(err, fieldcrypt.ErrKEKUnavailable) {
							// An interrupted run resumed with only the new KEK
							// configured: the keysets it had not reached are
							// still wrapped by the old one, which this process
							// can't load (the database records only the new).
							return fmt.Errorf("%d tenants' keysets could not be re-wrapped (see above): those still wrapped by the previous key-encryption key need it, so run this command again with the previous KEK configured (its --kek-file / --kek-uri; the new one is found through the database); the others are done", len(rep.Failed))
						}
					}
					return fmt.Errorf("%d tenants' keysets could not be re-wrapped (see above); the others are done", len(rep.Failed))
				}
				return nil
			})
		},
	}
	rotateKEK.Flags().StringVar(&toFile, "to-file", "", "new local KEK file (created if missing)")
	rotateKEK.Flags().StringVar(&toURI, "to-uri", "", "new KMS key URI")

	migrate := &cobra.Command{
		Use:   "migrate-erasure",
		Short: "Move tenants whose keysets are wrapped by the KEK only to per-tenant keys, so that tenant delete also erases them from later database backups",
		Long: `migrate-erasure gives every tenant still on the "kek" hierarchy a tenant key
in --tenant-key-dir (written and fsynced before use) and re-wraps its keysets
with it inside the KEK; field keys and data are not touched. Servers may keep
running, with the same --tenant-key-dir. A tenant that fails is listed (exit
status 1) and the others are moved; run it again to resume. Backups of the
database taken before a tenant was moved still hold its KEK-only keyset:
erasure holds against backups taken after. See docs/OPERATIONS.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: keys migrate-erasure", func(ctx context.Context, db *postgres.DB) error {
				bar := newProgress(cmd.ErrOrStderr(), "migrate keysets")
				rep, err := db.Keyring().MigrateErasure(ctx, func(done, total int) { bar.update(int64(done), int64(total)) })
				bar.done()
				if err != nil {
					return err
				}
				for t, err := range rep.Failed {
					fmt.Fprintf(cmd.ErrOrStderr(), "tenant %s: not migrated: %v\n", t, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%d tenants moved to tenant keys, %d already were, %d failed\n", rep.Migrated, rep.Skipped, len(rep.Failed))
				if len(rep.Failed) > 0 {
					return fmt.Errorf("%d tenants could not be migrated (see above); the others are done", len(rep.Failed))
				}
				return nil
			})
		},
	}

	cmd.AddCommand(status, rotate, sweep, rotateKEK, migrate)
	return cmd
}
