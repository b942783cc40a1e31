package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"

	"github.com/jackc/pgx/v5"
)

// Bootstrap creates or updates, idempotently, everything migrations can't
// create as the owner: the five roles with their attributes and passwords,
// the database (when create is true and it is missing), its privileges and
// the bulkhead schema. adminDSN must connect as a superuser or a role with
// CREATEROLE (and CREATEDB when create is true); its database is ignored.
//
// Role attributes set here are the security contract the self-check
// verifies: the runtime role is LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT and
// a member of nothing; the maintenance role is BYPASSRLS but NOINHERIT and
// owns nothing; the definer role can't log in and has no members (the owner
// is made a member only while migrations run, by WithDefinerMembership).
// When create is true (bulkhead owns the cluster), PUBLIC loses CONNECT and
// TEMPORARY on every other database.
func Bootstrap(ctx context.Context, adminDSN, database string, creds Credentials, create bool) error {
	conn, err := connectTo(ctx, adminDSN, "")
	if err != nil {
		return fmt.Errorf("bootstrap: connect as admin: %w", err)
	}
	defer conn.Close(ctx)

	roles := []struct{ name, attrs, password string }{
		{Owner, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS INHERIT", creds.Owner},
		{Runtime, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT", creds.Runtime},
		{Maintenance, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS NOINHERIT", creds.Maintenance},
		{Definer, "NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION BYPASSRLS NOINHERIT", ""},
		{KeyService, "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT", creds.KeyService},
	}
	// Two bootstraps at once (two first starts, parallel migrators) would
	// race on the catalogs ("tuple concurrently updated", or both creating a
	// role or the database): take turns under a session advisory lock, which
	// also spans CREATE DATABASE (it can't run in a transaction).
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", bootstrapLock); err != nil {
		return fmt.Errorf("bootstrap: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", bootstrapLock)
	err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		for _, r := range roles {
			var exists bool
			if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", r.name).Scan(&exists); err != nil {
				return fmt.Errorf("bootstrap: look up role %s: %w", r.name, err)
			}
			verb := "ALTER"
			if !exists {
				verb = "CREATE"
			}
			stmt := fmt.Sprintf("%s ROLE %s %s", verb, pgx.Identifier{r.name}.Sanitize(), r.attrs)
			if r.password != "" {
				// Utility statements take no parameters: quote the literal server-side.
				var lit string
				if err := tx.QueryRow(ctx, "SELECT quote_literal($1)", r.password).Scan(&lit); err != nil {
					return fmt.Errorf("bootstrap: quote password: %w", err)
				}
				stmt += " PASSWORD " + lit
			}
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return fmt.Errorf("bootstrap: %s role %s: %w", verb, r.name, err)
			}
		}
		// Nothing is a member of anything: a member of the definer role could
		// SET ROLE to it and bypass row-level security. Migrations that hand
		// functions to the definer get the membership only while they run
		// (WithDefinerMembership). Revoking heals databases bootstrapped
		// before it was revoked.
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", membershipLock); err != nil {
			return fmt.Errorf("bootstrap: lock: %w", err)
		}
		if err := revokeDefinerMembership(ctx, tx); err != nil {
			return fmt.Errorf("bootstrap: %w", err)
		}
		if create {
			// bulkhead owns this cluster: close every other database to
			// PUBLIC, so the runtime role can't connect to postgres or
			// template1 (or create temporary objects there). On an external
			// cluster other databases are not bulkhead's to change: the
			// self-check refuses to serve until the operator does this.
			if err := closeOtherDatabases(ctx, tx, database); err != nil {
				return fmt.Errorf("bootstrap: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}

	if create {
		var exists bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", database).Scan(&exists); err != nil {
			return fmt.Errorf("bootstrap: look up database: %w", err)
		}
		if !exists {
			_, err := conn.Exec(ctx, fmt.Sprintf("CREATE DATABASE %s OWNER %s", pgx.Identifier{database}.Sanitize(), Owner))
			if err != nil {
				return fmt.Errorf("bootstrap: create database %s: %w", database, err)
			}
		}
	}
	return PrepareDatabase(ctx, adminDSN, database)
}

// revokeDefinerMembership makes sure the owner is not a member of the
// definer role.
func revokeDefinerMembership(ctx context.Context, tx pgx.Tx) error {
	var member bool
	err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_auth_members m
		WHERE m.roleid = (SELECT oid FROM pg_roles WHERE rolname = $1) AND m.member = (SELECT oid FROM pg_roles WHERE rolname = $2))`,
		Definer, Owner).Scan(&member)
	if err != nil {
		return fmt.Errorf("look up membership of %s in %s: %w", Owner, Definer, err)
	}
	if member {
		if _, err := tx.Exec(ctx, fmt.Sprintf("REVOKE %s FROM %s", Definer, Owner)); err != nil {
			return fmt.Errorf("revoke %s from %s: %w", Definer, Owner, err)
		}
	}
	return nil
}

// closeOtherDatabases revokes PUBLIC's CONNECT and TEMPORARY on every
// database but database that accepts connections.
//
// Database ACLs live in the cluster-wide pg_database catalog, where two
// GRANTs or REVOKEs on one row at once fail with "tuple concurrently
// updated": PrepareDatabase (of another database, from another process)
// changes them too. Both take databaseACLLock in the admin connection's
// database; advisory locks are per database, so this serialises callers
// that share an admin connection string, as bulkhead's own do.
func closeOtherDatabases(ctx context.Context, tx pgx.Tx, database string) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", databaseACLLock); err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	rows, err := tx.Query(ctx, `SELECT datname FROM pg_database d WHERE datallowconn AND datname <> $1
		AND EXISTS (SELECT 1 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) a
		            WHERE a.grantee = 0 AND a.privilege_type IN ('CONNECT', 'TEMPORARY'))
		ORDER BY 1`, database)
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("list databases: %w", err)
	}
	for _, n := range names {
		if _, err := tx.Exec(ctx, "REVOKE CONNECT, TEMPORARY ON DATABASE "+pgx.Identifier{n}.Sanitize()+" FROM PUBLIC"); err != nil {
			return fmt.Errorf("close database %s to PUBLIC: %w", n, err)
		}
	}
	return nil
}

// WithDefinerMembership runs fn (applying migrations as the owner) while
// the owner is a member of the definer role, and revokes the membership
// when fn returns, whatever it returned. Migrations hand SECURITY DEFINER
// functions to the definer role (ALTER FUNCTION ... OWNER TO, and CREATE OR
// REPLACE of a function it owns), which PostgreSQL allows only to members;
// outside this window the owner can't SET ROLE to the BYPASSRLS definer.
// adminDSN must connect as a superuser or a role with CREATEROLE (the same
// connection string as Bootstrap's). Concurrent calls, and Bootstrap's
// revocation, take turns on an advisory lock in adminDSN's database, so
// none revokes while another's migrations run.
//
// It returns fn's error, or the error of granting or revoking (a failed
// revoke is also found by the self-check, which then refuses to serve).
func WithDefinerMembership(ctx context.Context, adminDSN string, fn func() error) (err error) {
	conn, err := connectTo(ctx, adminDSN, "")
	if err != nil {
		return fmt.Errorf("definer membership: connect as admin: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", membershipLock); err != nil {
		return fmt.Errorf("definer membership: lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", membershipLock)
	if _, err := conn.Exec(ctx, fmt.Sprintf("GRANT %s TO %s", Definer, Owner)); err != nil {
		return fmt.Errorf("definer membership: grant %s to %s: %w", Definer, Owner, err)
	}
	defer func() {
		rctx := context.WithoutCancel(ctx)
		rerr := pgx.BeginFunc(rctx, conn, func(tx pgx.Tx) error { return revokeDefinerMembership(rctx, tx) })
		if rerr != nil {
			err = errors.Join(err, fmt.Errorf("definer membership: %w", rerr))
		}
	}()
	return fn()
}

// membershipLock is the advisory lock key serialising WithDefinerMembership.
const membershipLock = bootstrapLock + 2

// bootstrapLock is the advisory lock key serialising bootstraps.
const bootstrapLock int64 = 0x62756c6b68656164 // "bulkhead"

// prepareLock is the advisory lock key serialising PrepareDatabase.
const prepareLock = bootstrapLock + 1

// databaseACLLock is the advisory lock key serialising changes to database
// ACLs (closeOtherDatabases, PrepareDatabase), taken in the admin
// connection's database.
const databaseACLLock = bootstrapLock + 3

// PrepareDatabase sets, idempotently, the privileges inside one database:
// only bulkhead's roles may connect, nobody but the owner may create
// objects, the public schema is closed, and the bulkhead schema exists,
// owned by the owner, and the bulkhead_context extension exists when the
// server has it. (A database cloned from a template needs this again:
// database privileges are not copied.)
func PrepareDatabase(ctx context.Context, adminDSN, database string) error {
	if err := restrictDatabase(ctx, adminDSN, database); err != nil {
		return err
	}
	conn, err := connectTo(ctx, adminDSN, database)
	if err != nil {
		return fmt.Errorf("prepare database %s: connect as admin: %w", database, err)
	}
	defer conn.Close(ctx)
	stmts := []string{
		"REVOKE ALL ON SCHEMA public FROM PUBLIC",
		fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s", Schema, Owner),
		fmt.Sprintf("ALTER SCHEMA %s OWNER TO %s", Schema, Owner),
		fmt.Sprintf("REVOKE ALL ON SCHEMA %s FROM PUBLIC", Schema),
		fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s, %s, %s", Schema, Runtime, Maintenance, Definer),
		// The definer role must be able to own the helpers it runs.
		fmt.Sprintf("GRANT CREATE ON SCHEMA %s TO %s", Schema, Definer),
		// Wrapped keysets live apart: only the key service may enter.
		fmt.Sprintf("CREATE SCHEMA IF NOT EXISTS %s AUTHORIZATION %s", KeySchema, Owner),
		fmt.Sprintf("ALTER SCHEMA %s OWNER TO %s", KeySchema, Owner),
		fmt.Sprintf("REVOKE ALL ON SCHEMA %s FROM PUBLIC", KeySchema),
		fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s, %s", KeySchema, KeyService, Maintenance),
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		// Its own key: Bootstrap holds bootstrapLock on another connection,
		// possibly in this very database (an external DATABASE_URL).
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", prepareLock); err != nil {
			return fmt.Errorf("prepare database %s: lock: %w", database, err)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("prepare database %s: %s: %w", database, s, err)
			}
		}
		// The signed-context extension, created by the admin so that a
		// database the owner role doesn't own works too. Where it is not
		// installed, migration 00010 stops with the fix.
		var available bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = $1)", ContextExtension).Scan(&available); err != nil {
			return fmt.Errorf("prepare database %s: look up extension %s: %w", database, ContextExtension, err)
		}
		if available {
			if _, err := tx.Exec(ctx, fmt.Sprintf("CREATE EXTENSION IF NOT EXISTS %s SCHEMA %s", ContextExtension, Schema)); err != nil {
				return fmt.Errorf("prepare database %s: create extension %s: %w", database, ContextExtension, err)
			}
			// To the version this build installs (migration 00016 needs 1.1).
			if _, err := tx.Exec(ctx, fmt.Sprintf("ALTER EXTENSION %s UPDATE", ContextExtension)); err != nil {
				return fmt.Errorf("prepare database %s: update extension %s: %w", database, ContextExtension, err)
			}
		}
		return nil
	})
}

// restrictDatabase lets only bulkhead's roles connect to database. It runs
// in the admin connection's own database under databaseACLLock (see
// closeOtherDatabases).
func restrictDatabase(ctx context.Context, adminDSN, database string) error {
	conn, err := connectTo(ctx, adminDSN, "")
	if err != nil {
		return fmt.Errorf("prepare database %s: connect as admin: %w", database, err)
	}
	defer conn.Close(ctx)
	db := pgx.Identifier{database}.Sanitize()
	stmts := []string{
		"REVOKE ALL ON DATABASE " + db + " FROM PUBLIC",
		fmt.Sprintf("GRANT CONNECT ON DATABASE %s TO %s, %s, %s, %s", db, Owner, Runtime, Maintenance, KeyService),
	}
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", databaseACLLock); err != nil {
			return fmt.Errorf("prepare database %s: lock: %w", database, err)
		}
		for _, s := range stmts {
			if _, err := tx.Exec(ctx, s); err != nil {
				return fmt.Errorf("prepare database %s: %s: %w", database, s, err)
			}
		}
		return nil
	})
}

// connectTo opens one connection with dsn, switching to database when not empty.
func connectTo(ctx context.Context, dsn, database string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("parse connection string: %w", err) // pgx masks the password in parse errors
	}
	if database != "" {
		cfg.Database = database
	}
	return pgx.ConnectConfig(ctx, cfg)
}

// RoleDSN returns dsn (a postgres:// URL) with its user and password
// replaced: how bulkhead derives its roles' connection strings from the
// admin connection string. It returns ErrInvalid-wrapped errors for a dsn
// that is not a URL.
func RoleDSN(dsn, user, password, database string) (string, error) {
	u, err := url.Parse(dsn)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", fmt.Errorf("connection string must be a postgres:// URL")
	}
	u.User = url.UserPassword(user, password)
	if database != "" {
		u.Path = "/" + database
	}
	return u.String(), nil
}
