// Package rls is bulkhead's one policy generator. A tenant table is declared
// once, with its isolation Kind, and Generate emits everything that enforces
// it in PostgreSQL:
//
//   - ENABLE and FORCE ROW LEVEL SECURITY (the table owner is not exempt);
//   - layer 1: one permissive policy confining every command to the tenant in
//     the transaction's context (USING and WITH CHECK);
//   - layer 2: RESTRICTIVE policies per command for the entity rules, with
//     WITH CHECK on INSERT and UPDATE so a row can't be written as someone
//     else or moved to another tenant, room or owner;
//   - the helper functions the policies call (LANGUAGE sql STABLE, pinned
//     search_path, called as (SELECT fn()) so each runs once per statement);
//   - the runtime role's grants (DML only, per table) and supporting indexes.
//
// Missing context means nothing: helpers read settings with
// nullif(current_setting(name, true), ”)::uuid, so an absent or reset
// setting is NULL, which matches no row; a malformed one raises an error.
//
// The membership helpers must read participants without recursing into
// participants' own policy, so they are SECURITY DEFINER functions owned by
// a dedicated NOLOGIN BYPASSRLS role that owns nothing else; Config.DefinerFunctions
// lists them for the auditor's allow-list. Each filters by the tenant in
// context itself and only answers about the caller's own entity.
//
// The output is deterministic SQL, safe to run more than once (CREATE OR
// REPLACE, DROP ... IF EXISTS), meant to run inside one transaction so that a
// failure installs nothing.
package rls
