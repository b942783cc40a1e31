package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/pgcluster"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/spf13/cobra"
)

func newDBCmd(cfg *config) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "db",
		Short: "Run and inspect the embedded PostgreSQL cluster",
		Long: `db manages the embedded PostgreSQL cluster in --data-dir on its own, for
tools and people: start it in the background, stop it, see its status, print
how each role connects, or open psql as the runtime role in a tenant's scope.`,
	}
	cmd.AddCommand(
		&cobra.Command{
			Use:   "start",
			Short: "Start the embedded cluster in the background (it keeps running after bulkhead exits)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				log, err := cfg.logger()
				if err != nil {
					return err
				}
				if cfg.databaseURL != "" {
					return fmt.Errorf("db start manages the embedded cluster; unset --database-url / DATABASE_URL")
				}
				cl, err := pgcluster.Start(cmd.Context(), pgcluster.Config{DataDir: cfg.dataDir, Port: cfg.pgPort, Detach: true, Logger: log})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "PostgreSQL %d running (pid %d), data dir %s, socket dir %s\n", cl.Major(), cl.PID(), cl.DataDir(), cl.SocketDir())
				return nil
			},
		},
		&cobra.Command{
			Use:   "stop",
			Short: "Stop the embedded cluster, whoever started it",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := pgcluster.Inspect(pgcluster.Config{DataDir: cfg.dataDir})
				if err != nil {
					return err
				}
				if !cl.Running() {
					fmt.Fprintln(cmd.OutOrStdout(), "PostgreSQL is not running in", cl.DataDir())
					return nil
				}
				if err := cl.Shutdown(); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "PostgreSQL stopped")
				return nil
			},
		},
		&cobra.Command{
			Use:   "status",
			Short: "Say whether the embedded cluster runs (exit 3 if not)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				cl, err := pgcluster.Inspect(pgcluster.Config{DataDir: cfg.dataDir})
				if err != nil {
					return err
				}
				if !cl.Running() {
					fmt.Fprintf(cmd.OutOrStdout(), "not running (data dir %s, initialised: %v)\n", cl.DataDir(), cl.Initialised())
					return exitError{3}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "running: PostgreSQL %d, pid %d, data dir %s, socket dir %s, port %d\n", cl.Major(), cl.PID(), cl.DataDir(), cl.SocketDir(), cl.Port())
				return nil
			},
		},
		newDBInfoCmd(cfg),
		newPsqlCmd(cfg),
	)
	return cmd
}

// dbInfo is the stable contract printed by db info --json.
type dbInfo struct {
	SuperuserDSN     string `json:"superuser_dsn,omitempty"`
	OwnerDSN         string `json:"owner_dsn"`
	AppDSN           string `json:"app_dsn"`
	MaintenanceDSN   string `json:"maintenance_dsn"`
	Database         string `json:"database"`
	Schema           string `json:"schema"`
	TenantSetting    string `json:"tenant_setting"`
	EntitySetting    string `json:"entity_setting"`
	ActingForSetting string `json:"acting_for_setting"`
	Running          *bool  `json:"running,omitempty"`
}

func newDBInfoCmd(cfg *config) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Print how each role connects (connection strings include passwords: treat the output as a secret)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := cfg.logger()
			if err != nil {
				return err
			}
			env, err := cfg.openEnv(cmd.Context(), log, inspectOnly)
			if err != nil {
				return err
			}
			info := dbInfo{OwnerDSN: env.ownerDSN, AppDSN: env.appDSN, MaintenanceDSN: env.maintDSN, Database: env.database,
				Schema: postgres.Schema, TenantSetting: postgres.TenantSetting, EntitySetting: postgres.EntitySetting, ActingForSetting: postgres.ActingForSetting}
			if env.cluster != nil {
				info.SuperuserDSN = env.cluster.SuperuserDSN(env.database)
				running := env.cluster.Running()
				info.Running = &running
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			w := cmd.OutOrStdout()
			if info.SuperuserDSN != "" {
				fmt.Fprintln(w, "superuser:  ", info.SuperuserDSN)
			}
			fmt.Fprintln(w, "owner:      ", info.OwnerDSN)
			fmt.Fprintln(w, "runtime:    ", info.AppDSN)
			fmt.Fprintln(w, "maintenance:", info.MaintenanceDSN)
			fmt.Fprintf(w, "database %s, schema %s, settings %s / %s / %s\n", info.Database, info.Schema, info.TenantSetting, info.EntitySetting, info.ActingForSetting)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (keys are a stable contract)")
	return cmd
}

func newPsqlCmd(cfg *config) *cobra.Command {
	var tenant, entity, actingFor string
	cmd := &cobra.Command{
		Use:   "psql [-- psql args]",
		Short: "Open psql as the runtime role, optionally in a tenant's and entity's scope",
		Long: `psql opens psql connected as the runtime role, exactly as the server connects.
With --tenant (and --entity, --acting-for) the context settings are set for the
whole psql session, so every transaction sees exactly what that tenant (and
entity) sees. Without them, tenant tables show no rows.

The context settings are superuser-only (the runtime role enters a context
only with a token signed by the server), so with --tenant psql logs in as the
superuser, sets them at connection start and switches to the runtime role
(role=bulkhead_app): policies apply exactly as for the server, and RESET ROLE
gives the operator's superuser back.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			log, err := cfg.logger()
			if err != nil {
				return err
			}
			env, err := cfg.openEnv(cmd.Context(), log, attachOnly)
			if err != nil {
				return err
			}
			var opts string
			for _, s := range []struct{ flag, value, setting string }{
				{"tenant", tenant, postgres.TenantSetting}, {"entity", entity, postgres.EntitySetting}, {"acting-for", actingFor, postgres.ActingForSetting},
			} {
				if s.value == "" {
					continue
				}
				id, err := bulkhead.ParseID("--"+s.flag, s.value)
				if err != nil {
					return err
				}
				opts += fmt.Sprintf(" -c %s=%s", s.setting, id)
			}
			dsn := env.appDSN
			if opts != "" {
				dsn = env.adminDSN
				if env.cluster != nil {
					dsn = env.cluster.SuperuserDSN(env.database)
				}
				opts += " -c role=" + postgres.Runtime
			}
			psql, err := exec.LookPath("psql")
			if env.cluster != nil {
				psql = env.cluster.Binaries().Path("psql")
				_, err = os.Stat(psql)
			}
			if err != nil {
				return fmt.Errorf("psql not found: install it with apt-get install -y postgresql-client")
			}
			// The password goes to psql through its environment, never its
			// argv (which every local user can read in ps).
			dsn, password, err := withoutPassword(dsn)
			if err != nil {
				return err
			}
			environ := append(os.Environ(), "PGOPTIONS="+opts)
			if password != "" {
				environ = append(environ, "PGPASSWORD="+password)
			}
			return syscall.Exec(psql, append([]string{"psql", dsn}, args...), environ)
		},
	}
	cmd.Flags().StringVar(&tenant, "tenant", "", "tenant id to scope the session to")
	cmd.Flags().StringVar(&entity, "entity", "", "entity id (user, agent) inside the tenant")
	cmd.Flags().StringVar(&actingFor, "acting-for", "", "principal the entity acts for (honoured only under a valid delegation)")
	return cmd
}

// passwordKV matches a password=... pair of a key/value connection string,
// quoted ('...' with \' and \\ escapes) or not.
var passwordKV = regexp.MustCompile(`(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|\S*)`)

// withoutPassword returns dsn without its password (URL or key/value form)
// and the password, for a child process's environment.
func withoutPassword(dsn string) (string, string, error) {
	cfg, err := pgconn.ParseConfig(dsn)
	if err != nil {
		return "", "", errors.New("connection string: not a valid PostgreSQL connection string")
	}
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", "", errors.New("connection string: not a valid URL")
		}
		if u.User != nil {
			u.User = url.User(u.User.Username())
		}
		q := u.Query()
		if q.Has("password") {
			q.Del("password")
			u.RawQuery = q.Encode()
		}
		return u.String(), cfg.Password, nil
	}
	return strings.TrimSpace(passwordKV.ReplaceAllString(dsn, "")), cfg.Password, nil
}
