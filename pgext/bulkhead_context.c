/*
 * bulkhead_context: the tenant context of a transaction, settable only with
 * a token signed by bulkhead.
 *
 * The policies read three settings (bulkhead.tenant_id, bulkhead.entity_id,
 * bulkhead.acting_for). Here they are PGC_SUSET custom settings: every role
 * reads them, only a superuser can SET them, in a session, in a startup
 * packet, in ALTER ROLE/DATABASE ... SET or in a function's SET clause. The
 * one other way in is bulkhead.enter(token), which checks an HMAC-SHA256
 * signature made with the context key (a file only the server's OS user
 * reads; never a setting any role can SHOW) and an expiry, then sets the
 * three settings transaction-locally (GUC_ACTION_LOCAL), so they vanish at
 * COMMIT or ROLLBACK, before a pooled connection serves anyone else.
 *
 * Token (105 bytes):
 *   [0]      version, 1
 *   [1,17)   tenant uuid
 *   [17,33)  entity uuid (all zero: none)
 *   [33,49)  acting-for uuid (all zero: none)
 *   [49,57)  expiry, microseconds since the Unix epoch, big-endian
 *   [57,73)  nonce (unique per token; bulkhead uses a random per-process
 *            prefix and a counter)
 *   [73,105) HMAC-SHA256(key, bytes [0,73))
 *
 * The library must be in shared_preload_libraries: loaded later, a backend
 * could have set a same-named placeholder setting before the real one
 * existed, and the policies would read it. Loaded any other way it refuses
 * to initialise, so CREATE EXTENSION and every enter() fail.
 */
#include "postgres.h"

#include <stdio.h>
#include <string.h>

/*
 * OpenSSL's SHA-256 primitives (the ones PostgreSQL links anyway), not its
 * HMAC API or PostgreSQL's pg_hmac: those allocate a context and look the
 * digest up on every call (~3-6 us with OpenSSL 3), more than the rest of
 * enter(). HMAC here is two SHA-256 states keyed once at start-up, copied
 * per call (~0.5 us). PostgreSQL's OPENSSL_API_COMPAT (pg_config.h) keeps
 * SHA256_Init & co. declared without deprecation warnings on OpenSSL 3.
 */
#include <openssl/sha.h>

#include "access/genam.h"
#include "access/htup_details.h"
#include "access/stratnum.h"
#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "datatype/timestamp.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/pg_list.h"
#include "parser/parse_func.h"
#include "storage/proc.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/fmgroids.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/uuid.h"

PG_MODULE_MAGIC;

#define TOKEN_VERSION 1
#define ID_LEN 16
#define MAC_LEN 32
#define SIGNED_LEN (1 + 3 * ID_LEN + 8 + 16)
#define TOKEN_LEN (SIGNED_LEN + MAC_LEN)
#define KEY_LEN 32
/* A token may not claim to live longer than this (bulkhead signs for 10 s). */
#define MAX_TTL_USECS (INT64CONST(300) * USECS_PER_SEC)

void		_PG_init(void);

static char *tenant_setting = NULL;
static char *entity_setting = NULL;
static char *acting_for_setting = NULL;
static char *key_file = NULL;

/* HMAC-SHA256 states after the key's inner and outer pads. */
static SHA256_CTX inner_state;
static SHA256_CTX outer_state;
static bool key_loaded = false;

/* The local transaction id of the last successful enter() in this backend. */
static LocalTransactionId entered_lxid = InvalidLocalTransactionId;

/* hexval returns the value of the hexadecimal digit c, or -1. */
static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/*
 * load_key reads KEY_LEN bytes, hex-encoded, from the key file (relative
 * paths are relative to the data directory). Surrounding whitespace is
 * ignored; anything else is an error, reported as a WARNING: the server
 * starts, and every enter() fails until the key is fixed and the server
 * restarted.
 */
static void
load_key(void)
{
	char	   *path;
	FILE	   *f;
	char		buf[2 * KEY_LEN + 64];
	size_t		n;
	char	   *s;
	char	   *e;
	int			i;
	uint8		key[KEY_LEN];
	uint8		pad[SHA256_CBLOCK];

	if (key_file == NULL || key_file[0] == '\0')
	{
		ereport(WARNING, (errmsg("bulkhead_context: bulkhead.context_key_file is empty: no context can be entered")));
		return;
	}
	path = key_file[0] == '/' ? pstrdup(key_file) : psprintf("%s/%s", DataDir, key_file);
	f = fopen(path, "r");
	if (f == NULL)
	{
		ereport(WARNING, (errmsg("bulkhead_context: cannot read context key file \"%s\": %m: no context can be entered", path)));
		return;
	}
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	s = buf;
	while (*s == ' ' || *s == '\n' || *s == '\r' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\r' || e[-1] == '\t'))
		e--;
	if (e - s != 2 * KEY_LEN)
	{
		ereport(WARNING, (errmsg("bulkhead_context: context key file \"%s\" must hold %d hex digits: no context can be entered", path, 2 * KEY_LEN)));
		return;
	}
	for (i = 0; i < KEY_LEN; i++)
	{
		int			hi = hexval(s[2 * i]);
		int			lo = hexval(s[2 * i + 1]);

		if (hi < 0 || lo < 0)
		{
			ereport(WARNING, (errmsg("bulkhead_context: context key file \"%s\" must hold %d hex digits: no context can be entered", path, 2 * KEY_LEN)));
			memset(key, 0, sizeof(key));
			memset(buf, 0, sizeof(buf));
			return;
		}
		key[i] = (uint8) (hi << 4 | lo);
	}
	memset(buf, 0, sizeof(buf));
	/* RFC 2104 with a key shorter than the block: pad it with zeros. */
	memset(pad, 0x36, sizeof(pad));
	for (i = 0; i < KEY_LEN; i++)
		pad[i] ^= key[i];
	SHA256_Init(&inner_state);
	SHA256_Update(&inner_state, pad, sizeof(pad));
	memset(pad, 0x5c, sizeof(pad));
	for (i = 0; i < KEY_LEN; i++)
		pad[i] ^= key[i];
	SHA256_Init(&outer_state);
	SHA256_Update(&outer_state, pad, sizeof(pad));
	memset(pad, 0, sizeof(pad));
	memset(key, 0, sizeof(key));
	key_loaded = true;
}

void
_PG_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bulkhead_context must be loaded with shared_preload_libraries"),
				 errhint("Add bulkhead_context to shared_preload_libraries in postgresql.conf and restart PostgreSQL.")));

	DefineCustomStringVariable("bulkhead.tenant_id",
							   "Tenant of the current transaction (set by bulkhead.enter).",
							   NULL, &tenant_setting, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL, NULL, NULL, NULL);
	DefineCustomStringVariable("bulkhead.entity_id",
							   "Entity of the current transaction (set by bulkhead.enter).",
							   NULL, &entity_setting, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL, NULL, NULL, NULL);
	DefineCustomStringVariable("bulkhead.acting_for",
							   "Principal the entity acts for (set by bulkhead.enter).",
							   NULL, &acting_for_setting, "",
							   PGC_SUSET, GUC_NOT_IN_SAMPLE | GUC_NO_RESET_ALL, NULL, NULL, NULL);
	DefineCustomStringVariable("bulkhead.context_key_file",
							   "File holding the context key, hex (relative: to the data directory).",
							   NULL, &key_file, "bulkhead_context.key",
							   PGC_POSTMASTER, GUC_SUPERUSER_ONLY | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, NULL);
	load_key();
}

static void
format_id(const uint8 *id, char *out)
{
	static const char digits[] = "0123456789abcdef";
	int			i;
	char	   *p = out;
	bool		zero = true;

	for (i = 0; i < ID_LEN; i++)
		if (id[i] != 0)
			zero = false;
	if (zero)
	{
		out[0] = '\0';
		return;
	}
	for (i = 0; i < ID_LEN; i++)
	{
		if (i == 4 || i == 6 || i == 8 || i == 10)
			*p++ = '-';
		*p++ = digits[id[i] >> 4];
		*p++ = digits[id[i] & 0xf];
	}
	*p = '\0';
}

static void
refuse(const char *why)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("bulkhead context refused: %s", why)));
}

PG_FUNCTION_INFO_V1(bulkhead_enter);

Datum
bulkhead_enter(PG_FUNCTION_ARGS)
{
	bytea	   *token = PG_GETARG_BYTEA_PP(0);
	const uint8 *t = (const uint8 *) VARDATA_ANY(token);
	uint8		mac[MAC_LEN];
	uint8		diff = 0;
	SHA256_CTX	h;
	uint64		raw = 0;
	int64		expiry;
	int64		now;
	char		tenant[37],
				entity[37],
				acting_for[37];
	int			i;

	if (!key_loaded)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bulkhead context refused: no context key is loaded"),
				 errhint("Put the key bulkhead signs with in the file named by bulkhead.context_key_file and restart PostgreSQL; the server log says what went wrong.")));
	if (VARSIZE_ANY_EXHDR(token) != TOKEN_LEN || t[0] != TOKEN_VERSION)
		refuse("malformed token");

	h = inner_state;
	SHA256_Update(&h, t, SIGNED_LEN);
	SHA256_Final(mac, &h);
	h = outer_state;
	SHA256_Update(&h, mac, MAC_LEN);
	SHA256_Final(mac, &h);
	for (i = 0; i < MAC_LEN; i++)
		diff |= mac[i] ^ t[SIGNED_LEN + i];
	if (diff != 0)
		refuse("bad signature");

	for (i = 0; i < 8; i++)
		raw = (raw << 8) | t[1 + 3 * ID_LEN + i];
	if (raw > (uint64) PG_INT64_MAX)
		refuse("malformed token");
	expiry = (int64) raw;
	now = GetCurrentTimestamp() + (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	if (now >= expiry)
		refuse("token expired");
	if (expiry - now > MAX_TTL_USECS)
		refuse("token lives too long");

	/*
	 * Once per transaction: code running after bulkhead's own enter() can't
	 * switch to another context, even with another valid token. Counted by
	 * transaction, not read from the settings, which RESET ALL, DISCARD or
	 * ROLLBACK TO SAVEPOINT could empty. A tenant set at all (a superuser's
	 * session value) also refuses: enter() never mixes with one.
	 */
	if (entered_lxid == MyProc->lxid)
		refuse("a context was already entered in this transaction");
	if (tenant_setting != NULL && tenant_setting[0] != '\0')
		refuse("a context is already set");

	format_id(t + 1, tenant);
	format_id(t + 1 + ID_LEN, entity);
	format_id(t + 1 + 2 * ID_LEN, acting_for);
	if (tenant[0] == '\0')
		refuse("no tenant");

	/*
	 * PGC_SUSET as the context: this function is the authority, not the
	 * caller's role. GUC_ACTION_LOCAL: reverted at transaction end.
	 */
	(void) set_config_option("bulkhead.tenant_id", tenant, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, ERROR, false);
	(void) set_config_option("bulkhead.entity_id", entity, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, ERROR, false);
	(void) set_config_option("bulkhead.acting_for", acting_for, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, ERROR, false);
	entered_lxid = MyProc->lxid;
	PG_RETURN_VOID();
}

/*
 * member_rooms_native(scope) is bulkhead.member_rooms without PL/pgSQL: the
 * rooms where the entity in context participates, in the tenant in
 * context, read from <schema>.participants (the schema is the function's
 * own) through its btree index on (tenant_id, entity_id) with the
 * statement's snapshot, as a STABLE function's query would. It reads past
 * row-level security, as the SECURITY DEFINER helper it replaces did, and
 * answers only about the context: no argument names a tenant, an entity or
 * a table. Semantics are those of the SQL helper:
 *
 *   tenant or entity empty            -> '{}'
 *   acting-for set and scope not NULL -> <schema>.member_rooms_delegated(scope)
 *                                        (the delegation check, in PL/pgSQL)
 *   otherwise                         -> distinct room_id of the entity's rows
 *
 * The slow path stays in SQL because it is rare (an agent acting for a
 * principal) and its delegation rules are the policy generator's. What the
 * native path saves is the PL/pgSQL call in a definer context, ~30 us per
 * statement (docs/BENCHMARKS.md).
 */
static int
uuid_order(const void *a, const void *b)
{
	return memcmp(a, b, UUID_LEN);
}

/*
 * context_id returns the uuid a context setting holds, or NULL when it is
 * unset or empty. The canonical form (8-4-4-4-12 hex digits, which is what
 * enter() writes) is decoded here: uuid_in's strtoul per byte cost ~0.18 us
 * per call, and the policies of one statement read the context several
 * times. Any other text goes to uuid_in, which accepts the other forms it
 * accepts and fails the statement on the rest, so the result is uuid_in's
 * for every value.
 */
static pg_uuid_t *
context_id(const char *value)
{
	pg_uuid_t  *id;
	const char *p = value;
	int			i;

	if (value == NULL || value[0] == '\0')
		return NULL;
	id = palloc(sizeof(pg_uuid_t));
	for (i = 0; i < UUID_LEN; i++)
	{
		int			hi,
					lo;

		if (i == 4 || i == 6 || i == 8 || i == 10)
		{
			if (*p != '-')
				break;
			p++;
		}
		hi = hexval(p[0]);
		lo = hi < 0 ? -1 : hexval(p[1]);
		if (lo < 0)
			break;
		id->data[i] = (uint8) (hi << 4 | lo);
		p += 2;
	}
	if (i == UUID_LEN && *p == '\0')
		return id;
	pfree(id);
	return DatumGetUUIDP(DirectFunctionCall1(uuid_in, CStringGetDatum(value)));
}

/* typed_column returns rel's column name, which must be of type typid
 * (typname in the error), or fails. */
static AttrNumber
typed_column(Relation rel, const char *name, Oid typid, const char *typname)
{
	AttrNumber	att = get_attnum(RelationGetRelid(rel), name);

	if (att == InvalidAttrNumber || get_atttype(RelationGetRelid(rel), att) != typid)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("bulkhead: %s has no %s column %s", RelationGetRelationName(rel), typname, name)));
	return att;
}

static AttrNumber
uuid_column(Relation rel, const char *name)
{
	return typed_column(rel, name, UUIDOID, "uuid");
}

static Oid
relation_am(Oid relid)
{
	HeapTuple	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	Oid			am;

	if (!HeapTupleIsValid(tup))
		return InvalidOid;
	am = ((Form_pg_class) GETSTRUCT(tup))->relam;
	ReleaseSysCache(tup);
	return am;
}

/* keyed_index returns a valid btree index of rel whose leading key columns
 * are atts[0..n), without expressions or predicate; fn and cols[0..n) name
 * the caller and the columns in the error when there is none. */
static Oid
keyed_index(Relation rel, const AttrNumber *atts, int n, const char *fn, const char *const *cols)
{
	List	   *indexes = RelationGetIndexList(rel);
	ListCell   *lc;
	Oid			found = InvalidOid;

	foreach(lc, indexes)
	{
		Oid			oid = lfirst_oid(lc);
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(oid));
		Form_pg_index ix;
		bool		match;
		int			i;

		if (!HeapTupleIsValid(tup))
			continue;
		ix = (Form_pg_index) GETSTRUCT(tup);
		match = ix->indisvalid && ix->indisready && ix->indislive && ix->indnkeyatts >= n &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			relation_am(oid) == BTREE_AM_OID;
		for (i = 0; match && i < n; i++)
			match = ix->indkey.values[i] == atts[i];
		if (match)
			found = oid;
		ReleaseSysCache(tup);
		if (OidIsValid(found))
			break;
	}
	list_free(indexes);
	if (!OidIsValid(found))
	{
		StringInfoData names;

		initStringInfo(&names);
		for (int i = 0; i < n; i++)
			appendStringInfo(&names, "%s%s", i > 0 ? ", " : "", cols[i]);
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bulkhead.%s: %s has no btree index on (%s)", fn, RelationGetRelationName(rel), names.data)));
	}
	return found;
}

/* open_table opens <schema nsp>.name for a scan with the statement's
 * snapshot, or fails (fn names the caller in the error). */
static Relation
open_table(Oid nsp, const char *name, const char *fn)
{
	Oid			relid;

	if (!ActiveSnapshotSet())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("bulkhead.%s: no active snapshot", fn)));
	relid = get_relname_relid(name, nsp);
	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("bulkhead.%s: no table %s in schema %s", fn, name, get_namespace_name(nsp))));
	/* Held to the end of the transaction, as a query's lock would be. */
	return table_open(relid, AccessShareLock);
}

#define MAX_KEYS 3

/* keyed_scan begins a scan of rel for the rows whose uuid columns cols[0..n)
 * equal vals[0..n), through a btree index leading with those columns, with
 * the statement's snapshot; fn names the caller in errors. */
static SysScanDesc
keyed_scan(Relation rel, int n, const char *const *cols, const Datum *vals, const char *fn)
{
	AttrNumber	atts[MAX_KEYS];
	ScanKeyData keys[MAX_KEYS];
	int			i;

	Assert(n > 0 && n <= MAX_KEYS);
	for (i = 0; i < n; i++)
	{
		atts[i] = uuid_column(rel, cols[i]);
		ScanKeyInit(&keys[i], atts[i], BTEqualStrategyNumber, F_UUID_EQ, vals[i]);
	}
	/* systable_beginscan copies the keys. */
	return systable_beginscan(rel, keyed_index(rel, atts, n, fn, cols), true, GetActiveSnapshot(), n, keys);
}

/* membership_scan begins a scan of rel (participants) for the rows of
 * entity in tenant and, with room not NULL, in *room. */
static SysScanDesc
membership_scan(Relation rel, pg_uuid_t *tenant, pg_uuid_t *entity, Datum *room, const char *fn)
{
	static const char *const cols[3] = {"tenant_id", "entity_id", "room_id"};
	Datum		vals[3];

	vals[0] = UUIDPGetDatum(tenant);
	vals[1] = UUIDPGetDatum(entity);
	if (room != NULL)
		vals[2] = *room;
	return keyed_scan(rel, room == NULL ? 2 : 3, cols, vals, fn);
}

/* delegated returns <schema nsp>.name(argtypes), the PL/pgSQL helper that
 * decides the delegated case (an agent acting for a principal under a
 * scope), or fails. */
static Oid
delegated(Oid nsp, const char *name, int nargs, const Oid *argtypes)
{
	return LookupFuncName(list_make2(makeString(get_namespace_name(nsp)), makeString(pstrdup(name))), nargs, argtypes, false);
}

PG_FUNCTION_INFO_V1(bulkhead_member_rooms_native);

Datum
bulkhead_member_rooms_native(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	pg_uuid_t  *tenant = context_id(tenant_setting);
	pg_uuid_t  *entity = context_id(entity_setting);
	Relation	rel;
	AttrNumber	a_room;
	SysScanDesc scan;
	HeapTuple	tup;
	pg_uuid_t  *rooms = NULL;
	int			n = 0,
				cap = 0,
				i,
				kept;
	Datum	   *elems;

	if (tenant == NULL || entity == NULL)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(UUIDOID));

	if (acting_for_setting != NULL && acting_for_setting[0] != '\0' && !PG_ARGISNULL(0))
	{
		Oid			argtypes[1] = {TEXTOID};

		return OidFunctionCall1Coll(delegated(nsp, "member_rooms_delegated", 1, argtypes), PG_GET_COLLATION(), PG_GETARG_DATUM(0));
	}

	rel = open_table(nsp, "participants", "member_rooms");
	a_room = uuid_column(rel, "room_id");
	scan = membership_scan(rel, tenant, entity, NULL, "member_rooms");
	while (HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		bool		isnull;
		Datum		room = heap_getattr(tup, a_room, RelationGetDescr(rel), &isnull);

		if (isnull)
			continue;
		if (n == cap)
		{
			cap = cap == 0 ? 16 : cap * 2;
			rooms = rooms == NULL ? palloc(cap * sizeof(pg_uuid_t)) : repalloc(rooms, cap * sizeof(pg_uuid_t));
		}
		memcpy(&rooms[n++], DatumGetUUIDP(room), UUID_LEN);
	}
	systable_endscan(scan);
	table_close(rel, NoLock);

	if (n == 0)
		PG_RETURN_ARRAYTYPE_P(construct_empty_array(UUIDOID));
	qsort(rooms, n, sizeof(pg_uuid_t), uuid_order);
	elems = palloc(n * sizeof(Datum));
	kept = 0;
	for (i = 0; i < n; i++)
		if (i == 0 || memcmp(&rooms[i], &rooms[i - 1], UUID_LEN) != 0)
			elems[kept++] = UUIDPGetDatum(&rooms[i]);
	PG_RETURN_ARRAYTYPE_P(construct_array(elems, kept, UUIDOID, UUID_LEN, false, TYPALIGN_CHAR));
}

/*
 * can_author_native(room, author, scope) is bulkhead.can_author without
 * PL/pgSQL: whether author may write in room, that is, author is one of the
 * caller's actors for scope (the entity in context, or the principal it acts
 * for under a valid delegation holding scope) and participates in room, in
 * the tenant in context. The write policies of memories call it once per
 * row. Semantics are those of the SQL helper:
 *
 *   tenant or entity empty, room or author NULL -> false
 *   author is the entity in context             -> whether <schema>.participants
 *                                                  has (tenant, entity, room),
 *                                                  through its btree index on
 *                                                  (tenant_id, entity_id, room_id)
 *   acting-for set and scope not NULL            -> <schema>.can_author_delegated(room, author, scope)
 *                                                  (the delegation check, in PL/pgSQL)
 *   otherwise                                    -> false
 *
 * The entity alone is one of its own actors whatever the scope
 * (current_actors), so the first case needs no delegation look-up. Like
 * member_rooms_native it reads past row-level security and answers only
 * about the caller's own actors: one bit, and false for any author that is
 * not the caller or its principal.
 */
PG_FUNCTION_INFO_V1(bulkhead_can_author_native);

Datum
bulkhead_can_author_native(PG_FUNCTION_ARGS)
{
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	pg_uuid_t  *tenant = context_id(tenant_setting);
	pg_uuid_t  *entity = context_id(entity_setting);
	pg_uuid_t  *author;
	Datum		room;
	Relation	rel;
	SysScanDesc scan;
	bool		found;

	if (tenant == NULL || entity == NULL || PG_ARGISNULL(0) || PG_ARGISNULL(1))
		PG_RETURN_BOOL(false);
	room = PG_GETARG_DATUM(0);
	author = PG_GETARG_UUID_P(1);

	if (memcmp(author, entity, UUID_LEN) != 0)
	{
		Oid			argtypes[3] = {UUIDOID, UUIDOID, TEXTOID};

		if (acting_for_setting == NULL || acting_for_setting[0] == '\0' || PG_ARGISNULL(2))
			PG_RETURN_BOOL(false);
		/* Never NULL for these arguments; were it, the call fails (closed). */
		return OidFunctionCall3Coll(delegated(nsp, "can_author_delegated", 3, argtypes), PG_GET_COLLATION(),
									room, PG_GETARG_DATUM(1), PG_GETARG_DATUM(2));
	}

	rel = open_table(nsp, "participants", "can_author");
	scan = membership_scan(rel, tenant, entity, &room, "can_author");
	found = HeapTupleIsValid(systable_getnext(scan));
	systable_endscan(scan);
	table_close(rel, NoLock);
	PG_RETURN_BOOL(found);
}

/* revoked raises access_check's one refusal. */
static void
revoked(void)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_AUTHORIZATION_SPECIFICATION),
			 errmsg("access revoked")));
}

/* attr_null reports whether tup's column att of rel is NULL. */
static bool
attr_null(HeapTuple tup, Relation rel, AttrNumber att)
{
	bool		isnull;

	(void) heap_getattr(tup, att, RelationGetDescr(rel), &isnull);
	return isnull;
}

/* attr_timestamptz reads tup's timestamptz column att of rel into *ts and
 * reports whether it is not NULL. */
static bool
attr_timestamptz(HeapTuple tup, Relation rel, AttrNumber att, TimestampTz *ts)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

	if (!isnull)
		*ts = DatumGetTimestampTz(d);
	return !isnull;
}

/* attr_uuid_is reports whether tup's uuid column att of rel is id. */
static bool
attr_uuid_is(HeapTuple tup, Relation rel, AttrNumber att, const pg_uuid_t *id)
{
	bool		isnull;
	Datum		d = heap_getattr(tup, att, RelationGetDescr(rel), &isnull);

	return !isnull && memcmp(DatumGetUUIDP(d), id, UUID_LEN) == 0;
}

/* credential_live reports whether table (refresh_tokens or api_keys) has a
 * row whose uuid column key is id, in tenant, of entity, not revoked, and,
 * with check_expiry, whose expires_at is NULL or after now(). */
static bool
credential_live(Oid nsp, const char *table, const char *key, Datum id, pg_uuid_t *tenant, pg_uuid_t *entity, bool check_expiry)
{
	const char *const cols[2] = {"tenant_id", key};
	Datum		vals[2];
	Relation	rel = open_table(nsp, table, "access_check");
	AttrNumber	a_entity = uuid_column(rel, "entity_id");
	AttrNumber	a_revoked = typed_column(rel, "revoked_at", TIMESTAMPTZOID, "timestamptz");
	AttrNumber	a_expires = check_expiry ? typed_column(rel, "expires_at", TIMESTAMPTZOID, "timestamptz") : InvalidAttrNumber;
	TimestampTz now = GetCurrentTransactionStartTimestamp();
	SysScanDesc scan;
	HeapTuple	tup;
	bool		live = false;

	vals[0] = UUIDPGetDatum(tenant);
	vals[1] = id;
	scan = keyed_scan(rel, 2, cols, vals, "access_check");
	while (!live && HeapTupleIsValid(tup = systable_getnext(scan)))
	{
		TimestampTz expires;

		live = attr_uuid_is(tup, rel, a_entity, entity) && attr_null(tup, rel, a_revoked) &&
			!(check_expiry && attr_timestamptz(tup, rel, a_expires, &expires) && expires <= now);
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	return live;
}

/*
 * access_check_native(session, issued_at, api_key, require_entity) is
 * bulkhead.access_check without PL/pgSQL: the per-request revocation check
 * that postgres.DB sends in the batch that enters the context. It raises
 * SQLSTATE 28000 "access revoked" (nothing else) unless
 *
 *   - the tenant in context has a row in <schema>.tenants (by its primary
 *     key) and its disabled_at is NULL;
 *   - with an entity in context: its row in <schema>.entities (tenant_id,
 *     id) exists, or require_entity is false (external principals need no
 *     row), and its disabled_at is NULL; then
 *       with session:  <schema>.refresh_tokens has a row of that family
 *                      (tenant_id, family_id) for the entity with
 *                      revoked_at NULL;
 *       with api_key:  <schema>.api_keys (tenant_id, id) holds it, for the
 *                      entity, with revoked_at NULL and expires_at NULL or
 *                      after the transaction's start (now());
 *       with neither:  the entity's tokens_not_before is NULL, or issued_at
 *                      is not NULL and not before it;
 *
 * and returns true. Semantics are those of the PL/pgSQL body of migration
 * 00014 (00020 replaces it). Like the membership functions it reads past
 * row-level security, with the statement's snapshot, and only the rows the
 * context names: the context's own tenant and entity, and that entity's
 * own session or key. What it tells a caller is one bit about its own
 * credentials, which its own policies let it read anyway.
 */
PG_FUNCTION_INFO_V1(bulkhead_access_check_native);

Datum
bulkhead_access_check_native(PG_FUNCTION_ARGS)
{
	static const char *const tenant_cols[1] = {"id"};
	static const char *const entity_cols[2] = {"tenant_id", "id"};
	Oid			nsp = get_func_namespace(fcinfo->flinfo->fn_oid);
	pg_uuid_t  *tenant = context_id(tenant_setting);
	pg_uuid_t  *entity = context_id(entity_setting);
	Relation	rel;
	SysScanDesc scan;
	HeapTuple	tup;
	Datum		vals[2];
	bool		ok,
				found,
				has_nbf = false;
	TimestampTz nbf = 0;

	if (tenant == NULL)
		revoked();

	rel = open_table(nsp, "tenants", "access_check");
	vals[0] = UUIDPGetDatum(tenant);
	scan = keyed_scan(rel, 1, tenant_cols, vals, "access_check");
	tup = systable_getnext(scan);
	ok = HeapTupleIsValid(tup) && attr_null(tup, rel, typed_column(rel, "disabled_at", TIMESTAMPTZOID, "timestamptz"));
	systable_endscan(scan);
	table_close(rel, NoLock);
	if (!ok)
		revoked();
	if (entity == NULL)
		PG_RETURN_BOOL(true);

	rel = open_table(nsp, "entities", "access_check");
	vals[1] = UUIDPGetDatum(entity);
	scan = keyed_scan(rel, 2, entity_cols, vals, "access_check");
	tup = systable_getnext(scan);
	found = HeapTupleIsValid(tup);
	ok = true;
	if (found)
	{
		ok = attr_null(tup, rel, typed_column(rel, "disabled_at", TIMESTAMPTZOID, "timestamptz"));
		has_nbf = attr_timestamptz(tup, rel, typed_column(rel, "tokens_not_before", TIMESTAMPTZOID, "timestamptz"), &nbf);
	}
	systable_endscan(scan);
	table_close(rel, NoLock);
	if (!found)
	{
		/* require_entity NULL counts as true, as `$4 IS NOT FALSE` did. */
		if (PG_ARGISNULL(3) || PG_GETARG_BOOL(3))
			revoked();
		PG_RETURN_BOOL(true);
	}
	if (!ok)
		revoked();

	if (!PG_ARGISNULL(0))
		ok = credential_live(nsp, "refresh_tokens", "family_id", PG_GETARG_DATUM(0), tenant, entity, false);
	else if (!PG_ARGISNULL(2))
		ok = credential_live(nsp, "api_keys", "id", PG_GETARG_DATUM(2), tenant, entity, true);
	else
		ok = !has_nbf || (!PG_ARGISNULL(1) && PG_GETARG_TIMESTAMPTZ(1) >= nbf);
	if (!ok)
		revoked();
	PG_RETURN_BOOL(true);
}

/*
 * The context functions in C (1.4): current_tenant_native,
 * current_entity_native and current_acting_for_native return the setting
 * enter() put into the transaction as a uuid, or NULL when it is unset or
 * empty (bulkhead.current_tenant() and the others of migration 00001 had
 * these semantics in SQL: nullif(current_setting(name, true), '')::uuid).
 * They read this library's own variables, which hold each setting's current
 * value, instead of looking the setting up by name twice and casting its
 * text through SQL: ~0.5 us less per call (docs/BENCHMARKS.md), and the
 * policies call current_tenant() once per statement per table. A value that
 * is not a uuid (only a superuser could set one) fails the statement, as the
 * SQL cast did: no rows, no writes.
 */
static Datum
context_result(FunctionCallInfo fcinfo, const char *value)
{
	pg_uuid_t  *id = context_id(value);

	if (id == NULL)
		PG_RETURN_NULL();
	PG_RETURN_UUID_P(id);
}

PG_FUNCTION_INFO_V1(bulkhead_current_tenant_native);

Datum
bulkhead_current_tenant_native(PG_FUNCTION_ARGS)
{
	return context_result(fcinfo, tenant_setting);
}

PG_FUNCTION_INFO_V1(bulkhead_current_entity_native);

Datum
bulkhead_current_entity_native(PG_FUNCTION_ARGS)
{
	return context_result(fcinfo, entity_setting);
}

PG_FUNCTION_INFO_V1(bulkhead_current_acting_for_native);

Datum
bulkhead_current_acting_for_native(PG_FUNCTION_ARGS)
{
	return context_result(fcinfo, acting_for_setting);
}
