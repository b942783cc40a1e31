package bench

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bulkhead-dev/bulkhead"
	"github.com/bulkhead-dev/bulkhead/postgres"
	"github.com/jackc/pgx/v5"
)

// PGBench is the point read measured a second way, by pgbench: each side
// runs alone for a few seconds per round, the sides alternating, and the
// figure is pgbench's "latency average" per round.
type PGBench struct {
	Command         string          // one side's pgbench command line, as run
	Scripts         int             // scripts (samples) per side
	Seconds         int             // per round and side
	RLS, Plain, App []time.Duration // per round
}

// RLSPlain is round i's RLS latency over the baseline's.
func (p *PGBench) RLSPlain(i int) float64 { return float64(p.RLS[i]) / float64(p.Plain[i]) }

// RLSApp is round i's RLS latency over the app-side checks'.
func (p *PGBench) RLSApp(i int) float64 { return float64(p.RLS[i]) / float64(p.App[i]) }

// literal substitutes quoted values for $1, $2... in sql (highest first,
// so $1 never eats the start of $10).
func literal(sql string, values ...string) string {
	for i := len(values); i >= 1; i-- {
		sql = strings.ReplaceAll(sql, "$"+strconv.Itoa(i), "'"+values[i-1]+"'")
	}
	return sql
}

var pgbenchLatency = regexp.MustCompile(`latency average = ([0-9.]+) ms`)

// pgbenchPointRead runs the point read (the signed context entered in the
// same transaction: \startpipeline, so one round trip like
// postgres.DB.Read) with pgbench -M prepared on db: as the runtime role
// (the policies), and as the role of baselineDSN, which bypasses row-level
// security, with WHERE tenant_id only and with the membership EXISTS
// written into the query, rounds times. Every script is one sample's
// literal query; tokens are signed just before each run (they live 10 s).
func pgbenchPointRead(ctx context.Context, env *benchEnv, db, baselineDSN string, rounds, seconds int) (*PGBench, error) {
	pgbench := env.cl.Binaries().Path("pgbench")
	if _, err := os.Stat(pgbench); err != nil {
		return nil, fmt.Errorf("pgbench cross-check: %s not found (it comes with the PostgreSQL server package): %w", pgbench, err)
	}
	dir, err := os.MkdirTemp("", "bench-pgbench")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	const nScripts = 32
	samples := env.samples
	if len(samples) > nScripts {
		samples = samples[:nScripts]
	}
	baseline, err := pgx.ParseConfig(baselineDSN)
	if err != nil {
		return nil, err
	}
	type side struct {
		name, user, password string
		app                  bool
		got                  *[]time.Duration
	}
	res := &PGBench{Scripts: len(samples), Seconds: seconds}
	sides := []side{{"rls", postgres.Runtime, env.creds.Runtime, false, &res.RLS},
		{"plain", baseline.User, baseline.Password, false, &res.Plain}, {"app", baseline.User, baseline.Password, true, &res.App}}
	for round := range rounds {
		for k := range sides {
			sd := sides[(k+round)%len(sides)]
			var check *pgx.Conn
			if round == 0 {
				if check, err = pgx.Connect(ctx, env.cl.DSN(sd.user, sd.password, db)); err != nil {
					return nil, err
				}
				defer check.Close(ctx) // three sides: three connections, until the end
			}
			var args []string
			for i, s := range samples {
				sql, targs, err := env.ctxKey.EnterSQL(bulkhead.Scope{Tenant: s.tenant, Entity: s.member})
				if err != nil {
					return nil, err
				}
				token, ok := targs[0].([]byte)
				if !ok || !strings.Contains(sql, "$1::bytea") {
					return nil, fmt.Errorf("pgbench cross-check: unexpected context statement %q", sql)
				}
				enter := literal(sql, `\x`+hex.EncodeToString(token))
				read := pointRead
				if sd.app {
					read += " AND " + fmt.Sprintf(memberCheck, "m.room_id")
				}
				read = literal(read, s.tenant.String(), s.memory.String(), s.member.String())
				if round == 0 {
					// The script must read its row: a side that returns
					// nothing would look fast.
					if err := checkOneRow(ctx, check, enter, read); err != nil {
						return nil, fmt.Errorf("pgbench cross-check (%s): sample %d: %w", sd.name, i, err)
					}
				}
				script := "\\startpipeline\n" + enter + ";\n" + read + ";\n\\endpipeline\n"
				name := filepath.Join(dir, fmt.Sprintf("%s-%d.sql", sd.name, i))
				if err := os.WriteFile(name, []byte(script), 0o600); err != nil {
					return nil, err
				}
				args = append(args, "-f", name+"@1")
			}
			flags := []string{"-n", "-M", "prepared", "-c", "1", "-T", strconv.Itoa(seconds)}
			if res.Command == "" {
				res.Command = fmt.Sprintf("pgbench %s -f <script>@1 (×%d, one per sample) %s", strings.Join(flags, " "), len(samples), db)
			}
			args = append(flags, args...)
			cmd := exec.CommandContext(ctx, pgbench, append(args, db)...)
			cmd.Env = append(os.Environ(), "PGHOST="+env.cl.SocketDir(), "PGPORT="+strconv.Itoa(env.cl.Port()),
				"PGUSER="+sd.user, "PGPASSWORD="+sd.password, "PGSSLMODE=disable")
			var out, errOut bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errOut
			if err := cmd.Run(); err != nil {
				return nil, fmt.Errorf("pgbench cross-check (%s): %v\n%s", sd.name, err, errOut.String())
			}
			m := pgbenchLatency.FindStringSubmatch(out.String())
			if m == nil {
				return nil, fmt.Errorf("pgbench cross-check (%s): no latency in its output:\n%s", sd.name, out.String())
			}
			if strings.Contains(out.String(), "number of failed transactions: ") && !strings.Contains(out.String(), "number of failed transactions: 0 ") {
				return nil, fmt.Errorf("pgbench cross-check (%s): failed transactions:\n%s", sd.name, out.String())
			}
			ms, _ := strconv.ParseFloat(m[1], 64)
			*sd.got = append(*sd.got, time.Duration(ms*float64(time.Millisecond)))
		}
	}
	return res, nil
}

// checkOneRow runs enter and read in one implicit transaction on conn and
// wants exactly one row from read.
func checkOneRow(ctx context.Context, conn *pgx.Conn, enter, read string) error {
	b := &pgx.Batch{}
	b.Queue(enter)
	b.Queue(read)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		br.Close()
		return err
	}
	rows, err := br.Query()
	if err != nil {
		br.Close()
		return err
	}
	n := 0
	for rows.Next() {
		n++
	}
	rows.Close()
	if err := br.Close(); err != nil {
		return err
	}
	if n != 1 {
		return fmt.Errorf("the read returned %d rows, want 1", n)
	}
	return nil
}
