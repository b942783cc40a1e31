package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/fieldcrypt"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/bulkhead-dev/bulkhead/transfer"
	"github.com/spf13/cobra"
)

// importKeyPath is where this bulkhead keeps its recipient key for tenant
// imports (private half wrapped by the KEK, mode 0600).
func (c *config) importKeyPath() string { return filepath.Join(c.dataDir, "import-key.json") }

// withTransfer runs f with this bulkhead's database and an in-process
// knowledge service: export and import read and write the vector store
// directly, so a running serve holding the embedded store must be stopped.
func withTransfer(cmd *cobra.Command, cfg *config, reason string, f func(ctx context.Context, b transfer.Bulkhead) error) error {
	return withDB(cmd, cfg, reason, func(ctx context.Context, db *postgres.DB) error {
		log, err := cfg.logger()
		if err != nil {
			return err
		}
		svc, done, err := cfg.knowledge(db, log)
		if errors.Is(err, errVectorsBusy) {
			return fmt.Errorf("%w: stop it for the export or import (tenant disable keeps the tenant's writes out meanwhile), then run again", err)
		}
		if err != nil {
			return err
		}
		defer done()
		return f(ctx, transfer.Bulkhead{DB: db, Knowledge: svc})
	})
}

func tenantTransferCmds(cfg *config) []*cobra.Command {
	var keyOut string
	importKey := &cobra.Command{
		Use:   "import-key [--out FILE]",
		Short: "Print this bulkhead's public recipient key for tenant export --to (creating the key on first use)",
		Long: `import-key prints the public half of this bulkhead's recipient key, which
another bulkhead's tenant export --to seals archives to. The private half is
created on first use in DATA_DIR/import-key.json (mode 0600), wrapped by this
bulkhead's key-encryption key; it never leaves this machine. The public key is
not secret. Its fingerprint is printed on stderr: the exporter's summary names
the same fingerprint.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, cfg, "cli: tenant import-key", func(ctx context.Context, db *postgres.DB) error {
				if db.Keyring() == nil {
					return errors.New("tenant import needs field encryption (a key-encryption key)")
				}
				r, pub, created, err := fieldcrypt.LoadOrCreateImportKey(cfg.importKeyPath(), db.Keyring().KEK())
				if err != nil {
					return err
				}
				if created {
					fmt.Fprintf(cmd.ErrOrStderr(), "created import key %s in %s\n", r.Fingerprint(), cfg.importKeyPath())
				} else {
					fmt.Fprintf(cmd.ErrOrStderr(), "import key %s (%s)\n", r.Fingerprint(), cfg.importKeyPath())
				}
				if keyOut != "" {
					return writeFileAtomic(keyOut, 0o644, func(w io.Writer) error { _, err := w.Write(pub); return err })
				}
				_, err = cmd.OutOrStdout().Write(pub)
				return err
			})
		},
	}
	importKey.Flags().StringVar(&keyOut, "out", "", "write the public key to FILE instead of stdout")

	var to, out string
	export := &cobra.Command{
		Use:   "export ID --to RECIPIENT.pub [--out FILE] > FILE",
		Short: "Export a tenant (rows, keys, vectors) as an archive encrypted to another bulkhead's recipient key",
		Long: `export writes tenant ID as one archive encrypted to the target bulkhead's
recipient key (print it there with bulkhead tenant import-key): its rows (read
in one snapshot on the maintenance path; sealed columns stay ciphertext), its
keysets (to be re-wrapped by the target's key-encryption key; this bulkhead's
KEK never leaves), and its vectors. API keys and refresh tokens are not
exported (their hashes are keyed with this server's secret).

The archive goes to stdout (refused if stdout is a terminal) or to --out
(written to a temporary file, renamed when complete). A summary with per-table
row counts and digests and the archive's SHA-256 is printed on stderr: compare
the SHA-256 with what import prints. The export is recorded in the tenant's
audit_log. The tenant keeps running here: stop its writes first (tenant
disable) for an exact copy, and delete it here once the import is verified
(docs/OPERATIONS.md).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := bulkhead.ParseID("ID", args[0])
			if err != nil {
				return err
			}
			if to == "" {
				return errors.New("--to: the target's recipient key is required (bulkhead tenant import-key on the target prints it)")
			}
			b, err := os.ReadFile(to)
			if err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			pub, err := fieldcrypt.ParseRecipientPublic(b)
			if err != nil {
				return fmt.Errorf("--to %s: %w", to, err)
			}
			if out == "" {
				if fi, err := os.Stdout.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
					return errors.New("the archive is binary: redirect stdout to a file or use --out FILE")
				}
			}
			return withTransfer(cmd, cfg, "cli: tenant export "+id.String(), func(ctx context.Context, src transfer.Bulkhead) error {
				var sum transfer.Summary
				write := func(w io.Writer) error {
					var err error
					sum, err = transfer.Export(ctx, src, id, pub, w)
					return err
				}
				if out != "" {
					err = writeFileAtomic(out, 0o600, write)
				} else {
					err = write(cmd.OutOrStdout())
				}
				if err != nil {
					return err
				}
				return printJSON(cmd.ErrOrStderr(), sum)
			})
		},
	}
	export.Flags().StringVar(&to, "to", "", "the target bulkhead's public recipient key (from its tenant import-key)")
	export.Flags().StringVar(&out, "out", "", "write the archive to FILE (complete or not at all) instead of stdout")

	var reembed bool
	imp := &cobra.Command{
		Use:   "import FILE [--reembed]",
		Short: "Import a tenant archive made for this bulkhead: verified whole first, then written all or nothing",
		Long: `import opens FILE with this bulkhead's import key and reads it completely
before writing anything: a tampered, truncated or foreign archive, one from a
newer schema, a tenant id that exists here, or vectors from an embedding model
this server does not run (unless --reembed) are refused with nothing written.
Then the rows are written in one transaction that verifies every table's row
count and digest before it commits, the tenant's keysets are re-wrapped by this
bulkhead's key-encryption key and a new tenant key, the vectors are stored and
read back (or, with --reembed, the chunks are embedded again with this server's
model), and only then is the tenant enabled. If anything fails after the rows
were committed, the tenant is deleted again. Prints a JSON summary (compare
archive_sha256 with the exporter's).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			if _, err := os.Stat(path); err != nil {
				return fmt.Errorf("archive: %w", err)
			}
			if _, err := os.Stat(cfg.importKeyPath()); err != nil {
				return fmt.Errorf("this bulkhead has no import key (%s): run bulkhead tenant import-key, and export again to it", cfg.importKeyPath())
			}
			return withTransfer(cmd, cfg, "cli: tenant import", func(ctx context.Context, dst transfer.Bulkhead) error {
				if dst.DB.Keyring() == nil {
					return errors.New("tenant import needs field encryption (a key-encryption key)")
				}
				rcpt, _, _, err := fieldcrypt.LoadOrCreateImportKey(cfg.importKeyPath(), dst.DB.Keyring().KEK())
				if err != nil {
					return err
				}
				sum, err := transfer.Import(ctx, dst, rcpt, path, transfer.Options{Reembed: reembed})
				if err != nil {
					return err
				}
				return printJSON(cmd.OutOrStdout(), sum)
			})
		},
	}
	imp.Flags().BoolVar(&reembed, "reembed", false, "embed the tenant's chunks again with this server's default model instead of importing the archive's vectors")
	return []*cobra.Command{importKey, export, imp}
}

// writeFileAtomic writes path through a temporary file in the same
// directory, fsynced and renamed into place only if write succeeds: path
// is complete or untouched.
func writeFileAtomic(path string, mode os.FileMode, write func(io.Writer) error) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return err
	}
	if err := write(f); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	ok = true
	return nil
}
