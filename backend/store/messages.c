/* Messages of a selected mailbox: see messages.h.
 *
 * Locking rule: every statement that changes message state (flags,
 * keywords, expunge) or allocates UIDs/modseqs first locks the mailbox row
 * (deliveries do it with their UPDATE of uid_next). Holding that lock, a
 * transaction's later statements see every earlier change and no other
 * writer can change the mailbox's messages until it commits, so STORE can
 * read rows, decide in C and write back without locking each message row.
 * Several mailboxes (COPY/MOVE) are locked in ascending id order, so COPY
 * a->b and b->a at once cannot deadlock; the counter triggers then update
 * mailbox_stats in mailbox_id order as well.
 *
 * Reads that need one consistent view (SELECT, change checks, FETCH) are
 * one statement each, so one snapshot. */
#include "backend/store/messages.h"

#include "common/proto/imap-types.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "backend/store/mailbox.h"
#include "common/core/str.h"

#define I64_SIZE 24
#define FLAGS_MASK 31u
#define UID_MAX 4294967295ull

/* ---- small helpers ---- */

static void fmt_i64(char buf[I64_SIZE], int64_t v)
{
	snprintf(buf, I64_SIZE, "%" PRId64, v);
}

static int oom(struct sora_error *err)
{
	return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
}

static int run(struct sora_db_conn *conn, enum sora_db_class cls, const char *sql, int nparams,
	       const char *const *values, PGresult **res_r, struct sora_error *err)
{
	return sora_db_exec(conn, cls, sql, nparams, values, res_r, NULL, err);
}

static int get_u64(const PGresult *res, int row, int col, uint64_t *v_r, struct sora_error *err)
{
	int64_t v = 0;

	if (sora_db_get_i64(res, row, col, &v, err) < 0)
		return -1;
	if (v < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT, "negative value in column %d", col);
	*v_r = (uint64_t)v;
	return 0;
}

static int get_u32(const PGresult *res, int row, int col, uint32_t *v_r, struct sora_error *err)
{
	uint64_t v = 0;

	if (get_u64(res, row, col, &v, err) < 0)
		return -1;
	/* uid_next may be 2^32 when the UID space is used up: clamp it to
	 * what the struct can say, the session then refuses APPEND anyway. */
	*v_r = v > UID_MAX ? (uint32_t)UID_MAX : (uint32_t)v;
	return 0;
}

/* Writes v in decimal at p (no NUL); returns the number of digits. */
static size_t put_u32(char *p, uint32_t v)
{
	char tmp[10];
	size_t n = 0, i;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	for (i = 0; i < n; i++)
		p[i] = tmp[n - 1 - i];
	return n;
}

/* "{1,2,3}" for a bigint[] parameter. Owned by the caller. */
static char *uid_array_literal(const uint32_t *uids, size_t count)
{
	char *s, *p;
	size_t i;

	if (count > (SIZE_MAX - 3) / 11)
		return NULL;
	s = malloc(count * 11 + 3);
	if (s == NULL)
		return NULL;
	p = s;
	*p++ = '{';
	for (i = 0; i < count; i++) {
		if (i > 0)
			*p++ = ',';
		p += put_u32(p, uids[i]);
	}
	*p++ = '}';
	*p = '\0';
	return s;
}

/* Parses the text form of a bigint[] of UIDs ("{1,2,3}", NULL or "" for
 * none) into *out. */
static int parse_uid_array(const char *text, struct sora_msgs_uids *out, struct sora_error *err)
{
	size_t n = 1, i = 0;
	const char *p;

	out->uids = NULL;
	out->count = 0;
	if (text == NULL || text[0] == '\0' || strcmp(text, "{}") == 0)
		return 0;
	if (text[0] != '{')
		return sora_error_set(err, SORA_ERR_PERMANENT, "bad UID array from the database");
	for (p = text; *p != '\0'; p++)
		if (*p == ',')
			n++;
	out->uids = malloc(n * sizeof(*out->uids));
	if (out->uids == NULL)
		return oom(err);
	p = text + 1;
	for (;;) {
		uint64_t v = 0;
		const char *start = p;

		while (*p >= '0' && *p <= '9') {
			v = v * 10 + (uint64_t)(*p - '0');
			if (v > UID_MAX)
				break;
			p++;
		}
		if (p == start || v == 0 || v > UID_MAX || i >= n || (*p != ',' && *p != '}')) {
			sora_msgs_uids_free(out);
			return sora_error_set(err, SORA_ERR_PERMANENT,
					      "bad UID array from the database");
		}
		out->uids[i++] = (uint32_t)v;
		if (*p++ == '}')
			break;
	}
	out->count = i;
	return 0;
}

/* Index of uid in the ascending array, or -1. */
static long uid_index(const struct sora_msgs_uids *u, uint32_t uid)
{
	return sora_imap_uids_find(u->uids, u->count, uid);
}

/* Number of entries >= uid in the ascending array. */
static size_t uids_at_or_above(const struct sora_msgs_uids *u, uint32_t uid)
{
	return u->count - sora_imap_uids_lower_bound(u->uids, u->count, uid);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return x < y ? -1 : x > y;
}

void sora_msgs_uids_free(struct sora_msgs_uids *uids)
{
	if (uids == NULL)
		return;
	free(uids->uids);
	uids->uids = NULL;
	uids->count = 0;
}

/* ---- keywords ---- */

/* Keyword lists in C are arrays of borrowed (pointer, length) pairs into a
 * space-separated string. */
struct kwlist {
	struct sora_str *items;
	size_t count;
};

static void kwlist_free(struct kwlist *l)
{
	free(l->items);
	l->items = NULL;
	l->count = 0;
}

static bool kw_in(const struct kwlist *l, struct sora_str k)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		if (sora_str_ieq(l->items[i], k))
			return true;
	return false;
}

static const struct sora_str *kw_find(const struct kwlist *l, struct sora_str k)
{
	size_t i;

	for (i = 0; i < l->count; i++)
		if (sora_str_ieq(l->items[i], k))
			return &l->items[i];
	return NULL;
}

/* Splits s on spaces (runs of spaces count as one). With dedup, a keyword
 * equal to an earlier one case-insensitively is dropped (the first
 * spelling wins). Returns 0 or -1 when out of memory. */
static int kw_split(const char *s, bool dedup, struct kwlist *out)
{
	size_t n = 0, i;
	const char *p;

	out->items = NULL;
	out->count = 0;
	if (s == NULL)
		return 0;
	for (p = s; *p != '\0'; p++)
		if (*p != ' ' && (p == s || p[-1] == ' '))
			n++;
	if (n == 0)
		return 0;
	out->items = malloc(n * sizeof(*out->items));
	if (out->items == NULL)
		return -1;
	for (p = s; *p != '\0';) {
		struct sora_str k;

		while (*p == ' ')
			p++;
		if (*p == '\0')
			break;
		k.p = p;
		while (*p != '\0' && *p != ' ')
			p++;
		k.len = (size_t)(p - k.p);
		if (dedup && kw_in(out, k))
			continue;
		out->items[out->count++] = k;
	}
	for (i = out->count; i < n; i++)
		out->items[i] = SORA_STR_NULL;
	return 0;
}

/* Joins l with single spaces into a new string ("" for none). */
static char *kw_join(const struct kwlist *l)
{
	size_t len = 1, i;
	char *s, *p;

	for (i = 0; i < l->count; i++)
		len += l->items[i].len + 1;
	s = malloc(len);
	if (s == NULL)
		return NULL;
	p = s;
	for (i = 0; i < l->count; i++) {
		if (i > 0)
			*p++ = ' ';
		memcpy(p, l->items[i].p, l->items[i].len);
		p += l->items[i].len;
	}
	*p = '\0';
	return s;
}

static int cmp_kw(const void *a, const void *b)
{
	const struct sora_str *x = a, *y = b;
	size_t n = x->len < y->len ? x->len : y->len;
	int c = strncasecmp(x->p, y->p, n);

	if (c != 0)
		return c;
	return x->len < y->len ? -1 : x->len > y->len;
}

char *sora_msgs_keywords_normalize(const char *keywords)
{
	struct kwlist l;
	char *s;

	if (kw_split(keywords, true, &l) < 0)
		return NULL;
	if (l.count > 1)
		qsort(l.items, l.count, sizeof(*l.items), cmp_kw);
	s = kw_join(&l);
	kwlist_free(&l);
	return s;
}

/* ---- open (SELECT / EXAMINE) ---- */

/* mb: the mailbox as of this statement's snapshot. claim: a read-write
 * SELECT takes the UIDs from recent_uid up to the uid_next of that same
 * snapshot; the FOR UPDATE subquery reads recent_uid as the latest
 * committed value (after waiting for a concurrent claim), so two sessions
 * never claim the same UID, and because the claim ends at the snapshot's
 * uid_next every claimed UID is in the UID list this statement returns.
 * The UIDs come as one array (one row and one text value instead of a row
 * per message) from an index-only scan of messages_mailbox_live_uid_idx,
 * already in order; the keywords from messages_mailbox_keywords_idx, which
 * only holds messages that have some (migration 0004). The unseen count is
 * the trigger-kept one, from the same snapshot. */
#define SQL_OPEN_HEAD \
	"WITH mb AS (" \
	"  SELECT b.id, b.uid_validity, b.uid_next, b.highest_modseq," \
	"         coalesce(b.special_use, '') AS su, b.noselect, b.recent_uid, s.unseen_count" \
	"    FROM mailboxes b JOIN mailbox_stats s ON s.mailbox_id = b.id" \
	"   WHERE b.account_id = $1 AND b.name = $2" \
	")"
#define SQL_OPEN_CLAIM \
	", claim AS (" \
	"  UPDATE mailboxes m SET recent_uid = mb.uid_next" \
	"    FROM mb, (SELECT id, recent_uid FROM mailboxes" \
	"               WHERE account_id = $1 AND name = $2 FOR UPDATE) o" \
	"   WHERE m.id = mb.id AND o.id = mb.id AND NOT mb.noselect" \
	"     AND o.recent_uid < mb.uid_next" \
	"  RETURNING o.recent_uid" \
	")"
/* $3..$6: the cached entry's mailbox id, UIDVALIDITY, modseq and uid_next
 * (uid-cache.h), or NULL. With an entry that still describes this
 * mailbox (delta), column 14 holds the live UIDs from its uid_next on and
 * column 12 the UIDs below it expunged since its modseq; otherwise column
 * 8 holds every live UID. Each list is its own CASE branch, so only one
 * subquery runs, and the delta's is a range on uid that the planner
 * reads by index (a bound that depended on the CASE made it estimate a
 * third of the mailbox and scan the table). */
#define SQL_OPEN_DELTA \
	", d AS (" \
	"  SELECT coalesce(mb.id = $3::bigint AND mb.uid_validity = $4::bigint" \
	"                  AND mb.highest_modseq >= $5::bigint, false) AS delta FROM mb" \
	")"
#define SQL_OPEN_TAIL(claimed) \
	" SELECT mb.id, mb.uid_validity, mb.uid_next, mb.highest_modseq, mb.su, mb.noselect," \
	"       mb.recent_uid, " claimed "," \
	"       CASE WHEN NOT d.delta THEN" \
	"         ARRAY(SELECT uid FROM messages" \
	"                WHERE mailbox_id = mb.id AND expunged_at IS NULL ORDER BY uid)::text" \
	"       END," \
	"       (SELECT min(uid) FROM messages" \
	"         WHERE mailbox_id = mb.id AND expunged_at IS NULL AND flags & 1 = 0)," \
	"       mb.unseen_count," \
	"       (SELECT string_agg(k, ' ' ORDER BY lower(k)) FROM (" \
	"          SELECT min(k) AS k FROM messages, unnest(keywords) AS k" \
	"           WHERE mailbox_id = mb.id AND expunged_at IS NULL AND keywords <> '{}'" \
	"           GROUP BY lower(k) ORDER BY lower(k) LIMIT 256) kw)," \
	"       CASE WHEN d.delta THEN" \
	"         (SELECT array_agg(uid ORDER BY uid) FROM messages" \
	"           WHERE mailbox_id = mb.id AND expunged_at IS NOT NULL" \
	"             AND expunged_modseq > $5::bigint AND uid < $6::bigint)::text END," \
	"       d.delta," \
	"       CASE WHEN d.delta THEN" \
	"         ARRAY(SELECT uid FROM messages" \
	"                WHERE mailbox_id = mb.id AND expunged_at IS NULL" \
	"                  AND uid >= $6::bigint AND uid < mb.uid_next ORDER BY uid)::text" \
	"       END" \
	"  FROM mb, d"

static const char sql_open_claim[] =
	SQL_OPEN_HEAD SQL_OPEN_CLAIM SQL_OPEN_DELTA
	SQL_OPEN_TAIL("(SELECT recent_uid FROM claim)");
static const char sql_open_examine[] =
	SQL_OPEN_HEAD SQL_OPEN_DELTA SQL_OPEN_TAIL("NULL::bigint");

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* The live UIDs from a cached entry, the UIDs expunged since it (some of
 * which it may not hold) and the new UIDs (all above it), into *out. */
static int uids_apply_delta(const struct sora_uid_cache_entry *e,
			    const struct sora_msgs_uids *gone, const struct sora_msgs_uids *added,
			    struct sora_msgs_uids *out, struct sora_error *err)
{
	size_t i, k = 0, n = 0;

	out->uids = malloc((e->count + added->count + 1) * sizeof(*out->uids));
	if (out->uids == NULL)
		return oom(err);
	for (i = 0; i < e->count; i++) {
		while (k < gone->count && gone->uids[k] < e->uids[i])
			k++;
		if (k < gone->count && gone->uids[k] == e->uids[i])
			continue;
		out->uids[n++] = e->uids[i];
	}
	for (i = 0; i < added->count; i++) {
		if (n > 0 && added->uids[i] <= out->uids[n - 1]) {
			free(out->uids);
			out->uids = NULL;
			return sora_error_set(err, SORA_ERR_PERMANENT,
					      "UID delta out of order (cached list stale)");
		}
		out->uids[n++] = added->uids[i];
	}
	out->count = n;
	return 0;
}

_Static_assert(SORA_MSGS_KEYWORDS_MAX == 256, "keep the LIMIT in SQL_OPEN_TAIL in step");

int sora_msgs_open(struct sora_db_conn *conn, struct sora_uid_cache *cache, int64_t account_id,
		   const char *name, bool claim_recent, struct sora_msgs_open_result *res_r,
		   struct sora_error *err)
{
	char norm[SORA_MAILBOX_NAME_MAX + 1], acc[I64_SIZE], cid[I64_SIZE], cval[I64_SIZE],
	     cmod[I64_SIZE], cnext[I64_SIZE];
	const char *params[6] = { acc, norm, NULL, NULL, NULL, NULL };
	struct sora_msgs_open_result *r = res_r;
	struct sora_uid_cache_entry cached;
	PGresult *res = NULL;
	uint32_t unclaimed = 0;
	uint64_t unseen = 0, now = monotonic_ms();

	memset(r, 0, sizeof(*r));
	memset(&cached, 0, sizeof(cached));
	if (sora_mailbox_name_normalize(name, norm, sizeof(norm), err) < 0)
		return -1;
	fmt_i64(acc, account_id);
	if (sora_uid_cache_get(cache, account_id, norm, now, &cached) == 1) {
		fmt_i64(cid, cached.mailbox_id);
		fmt_i64(cval, cached.uid_validity);
		fmt_i64(cmod, (int64_t)cached.modseq);
		fmt_i64(cnext, cached.uid_next);
		params[2] = cid;
		params[3] = cval;
		params[4] = cmod;
		params[5] = cnext;
	}
	if (sora_db_exec_prepared(conn, claim_recent ? SORA_DB_CLASS_WRITE : SORA_DB_CLASS_DEFAULT,
				  claim_recent ? "sora_msgs_open_claim_v2" : "sora_msgs_open_examine_v2",
				  claim_recent ? sql_open_claim : sql_open_examine, 6, params, NULL,
				  NULL, 0, &res, NULL, err) < 0) {
		sora_uid_cache_entry_free(&cached);
		return -1;
	}
	if (PQntuples(res) != 1 || PQgetvalue(res, 0, 5)[0] == 't') {
		PQclear(res);
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such selectable mailbox");
	}
	if (sora_db_get_i64(res, 0, 0, &r->mailbox.id, err) < 0 ||
	    get_u32(res, 0, 1, &r->mailbox.uid_validity, err) < 0 ||
	    get_u32(res, 0, 2, &r->mailbox.uid_next, err) < 0 ||
	    get_u64(res, 0, 3, &r->mailbox.highest_modseq, err) < 0 ||
	    get_u32(res, 0, 6, &unclaimed, err) < 0)
		goto fail;
	snprintf(r->mailbox.special_use, sizeof(r->mailbox.special_use), "%s",
		 PQgetvalue(res, 0, 4));
	if (PQgetvalue(res, 0, 13)[0] == 't') {
		struct sora_msgs_uids gone = { 0 }, added = { 0 };
		int rc = -1;

		if (parse_uid_array(PQgetisnull(res, 0, 12) ? NULL : PQgetvalue(res, 0, 12), &gone,
				    err) == 0 &&
		    parse_uid_array(PQgetisnull(res, 0, 14) ? NULL : PQgetvalue(res, 0, 14), &added,
				    err) == 0)
			rc = uids_apply_delta(&cached, &gone, &added, &r->uids, err);
		sora_msgs_uids_free(&gone);
		sora_msgs_uids_free(&added);
		if (rc < 0)
			goto fail;
	} else if (parse_uid_array(PQgetisnull(res, 0, 8) ? NULL : PQgetvalue(res, 0, 8),
				   &r->uids, err) < 0) {
		goto fail;
	}
	sora_uid_cache_entry_free(&cached);
	cached.mailbox_id = r->mailbox.id;
	cached.uid_validity = r->mailbox.uid_validity;
	cached.modseq = r->mailbox.highest_modseq;
	cached.uid_next = r->mailbox.uid_next;
	cached.uids = r->uids.uids;
	cached.count = r->uids.count;
	sora_uid_cache_put(cache, account_id, norm, now, &cached);
	memset(&cached, 0, sizeof(cached));
	if (claim_recent) {
		if (!PQgetisnull(res, 0, 7) && get_u32(res, 0, 7, &r->first_recent, err) < 0)
			goto fail;
	} else if (unclaimed < r->mailbox.uid_next) {
		/* EXAMINE claims nothing: the first unclaimed UID, so the
		 * session can report the RECENT count. */
		r->first_recent = unclaimed;
	}
	if (r->first_recent != 0)
		r->recent_count = (uint32_t)uids_at_or_above(&r->uids, r->first_recent);
	if (!PQgetisnull(res, 0, 9)) {
		uint32_t first_unseen;
		long idx;

		if (get_u32(res, 0, 9, &first_unseen, err) < 0)
			goto fail;
		idx = uid_index(&r->uids, first_unseen);
		r->first_unseen_seq = idx >= 0 ? (uint32_t)idx + 1 : 0;
	}
	if (get_u64(res, 0, 10, &unseen, err) < 0)
		goto fail;
	r->unseen_count = (uint32_t)unseen;
	r->mailbox.keywords = strdup(PQgetisnull(res, 0, 11) ? "" : PQgetvalue(res, 0, 11));
	if (r->mailbox.keywords == NULL) {
		oom(err);
		goto fail;
	}
	PQclear(res);
	return 0;
fail:
	PQclear(res);
	sora_uid_cache_entry_free(&cached);
	sora_msgs_open_result_free(r);
	return -1;
}

void sora_msgs_open_result_free(struct sora_msgs_open_result *res)
{
	if (res == NULL)
		return;
	free(res->mailbox.keywords);
	res->mailbox.keywords = NULL;
	sora_msgs_uids_free(&res->uids);
}

/* ---- change checks ---- */

/* Row 0 (kind 0) describes the mailbox, one row of kind 1 per changed live
 * message follows; all from one snapshot. The claim works as in open. */
#define SQL_CHANGES_HEAD \
	"WITH mb AS (" \
	"  SELECT id, uid_validity, uid_next, highest_modseq, noselect FROM mailboxes" \
	"   WHERE id = $1" \
	")"
#define SQL_CHANGES_CLAIM \
	", claim AS (" \
	"  UPDATE mailboxes m SET recent_uid = mb.uid_next" \
	"    FROM mb, (SELECT id, recent_uid FROM mailboxes WHERE id = $1 FOR UPDATE) o" \
	"   WHERE m.id = mb.id AND o.id = mb.id AND NOT mb.noselect" \
	"     AND o.recent_uid < mb.uid_next" \
	"  RETURNING o.recent_uid" \
	")"
#define SQL_CHANGES_TAIL(claimed) \
	" SELECT 0 AS kind, mb.uid_validity, mb.uid_next, mb.highest_modseq, " claimed "," \
	"       (SELECT array_agg(uid ORDER BY uid)::text FROM messages" \
	"         WHERE mailbox_id = $1 AND expunged_at IS NULL AND uid >= $3)," \
	"       (SELECT array_agg(uid ORDER BY uid)::text FROM messages" \
	"         WHERE mailbox_id = $1 AND expunged_at IS NOT NULL" \
	"           AND expunged_modseq > $2 AND uid < $3)," \
	"       mb.noselect::text" \
	"  FROM mb " \
	"UNION ALL " \
	"SELECT 1, uid, flags, updated_modseq, NULL, array_to_string(keywords, ' '), NULL, NULL" \
	"  FROM messages WHERE mailbox_id = $1 AND expunged_at IS NULL AND uid < $3" \
	"   AND updated_modseq > $2 " \
	"ORDER BY 1, 2"

static const char sql_changes_claim[] =
	SQL_CHANGES_HEAD SQL_CHANGES_CLAIM SQL_CHANGES_TAIL("(SELECT recent_uid FROM claim)");
static const char sql_changes_peek[] = SQL_CHANGES_HEAD SQL_CHANGES_TAIL("NULL::bigint");

static int read_state(const PGresult *res, int row, int col_uid, int col_flags, int col_modseq,
		      int col_kw, struct sora_msgs_state *st, struct sora_error *err)
{
	uint64_t flags = 0;

	if (get_u32(res, row, col_uid, &st->uid, err) < 0 ||
	    get_u64(res, row, col_flags, &flags, err) < 0 ||
	    get_u64(res, row, col_modseq, &st->modseq, err) < 0)
		return -1;
	st->flags = (unsigned int)(flags & FLAGS_MASK);
	st->keywords = strdup(PQgetisnull(res, row, col_kw) ? "" : PQgetvalue(res, row, col_kw));
	if (st->keywords == NULL)
		return oom(err);
	return 0;
}

int sora_msgs_changes(struct sora_db_conn *conn, int64_t mailbox_id, uint64_t since_modseq,
		      uint32_t since_uid_next, bool claim_recent,
		      struct sora_msgs_changes *ch_r, struct sora_error *err)
{
	char mbox[I64_SIZE], since[I64_SIZE], next[I64_SIZE];
	const char *params[3] = { mbox, since, next };
	PGresult *res = NULL;
	int i, n;

	memset(ch_r, 0, sizeof(*ch_r));
	fmt_i64(mbox, mailbox_id);
	snprintf(since, sizeof(since), "%" PRIu64, since_modseq);
	snprintf(next, sizeof(next), "%" PRIu32, since_uid_next);
	if (run(conn, claim_recent ? SORA_DB_CLASS_WRITE : SORA_DB_CLASS_DEFAULT,
		claim_recent ? sql_changes_claim : sql_changes_peek, 3, params, &res, err) < 0)
		return -1;
	n = PQntuples(res);
	if (n < 1 || PQgetvalue(res, 0, 0)[0] != '0' || PQgetvalue(res, 0, 7)[0] == 't') {
		PQclear(res);
		return sora_error_set(err, SORA_ERR_CONFLICT, "mailbox %" PRId64 " is gone",
				      mailbox_id);
	}
	if (get_u32(res, 0, 1, &ch_r->uid_validity, err) < 0 ||
	    get_u32(res, 0, 2, &ch_r->uid_next, err) < 0 ||
	    get_u64(res, 0, 3, &ch_r->highest_modseq, err) < 0)
		goto fail;
	if (!PQgetisnull(res, 0, 4)) {
		if (get_u32(res, 0, 4, &ch_r->first_recent, err) < 0)
			goto fail;
		/* UIDs below since_uid_next are already in the session's view
		 * as not \Recent; only new ones can become \Recent there. */
		if (ch_r->first_recent < since_uid_next)
			ch_r->first_recent = since_uid_next;
	}
	if (parse_uid_array(PQgetisnull(res, 0, 5) ? NULL : PQgetvalue(res, 0, 5), &ch_r->added,
			    err) < 0 ||
	    parse_uid_array(PQgetisnull(res, 0, 6) ? NULL : PQgetvalue(res, 0, 6),
			    &ch_r->expunged, err) < 0)
		goto fail;
	if (n > 1) {
		ch_r->changed = calloc((size_t)n - 1, sizeof(*ch_r->changed));
		if (ch_r->changed == NULL) {
			oom(err);
			goto fail;
		}
	}
	for (i = 1; i < n; i++) {
		ch_r->changed_count++;
		if (read_state(res, i, 1, 2, 3, 5, &ch_r->changed[i - 1], err) < 0)
			goto fail;
	}
	PQclear(res);
	return 0;
fail:
	PQclear(res);
	sora_msgs_changes_free(ch_r);
	return -1;
}

static void states_free(struct sora_msgs_state *states, size_t count)
{
	size_t i;

	if (states == NULL)
		return;
	for (i = 0; i < count; i++)
		free(states[i].keywords);
	free(states);
}

void sora_msgs_changes_free(struct sora_msgs_changes *ch)
{
	if (ch == NULL)
		return;
	sora_msgs_uids_free(&ch->added);
	sora_msgs_uids_free(&ch->expunged);
	states_free(ch->changed, ch->changed_count);
	ch->changed = NULL;
	ch->changed_count = 0;
}

/* ---- FETCH ---- */

/* WITH ORDINALITY keeps the caller's order and duplicates; the LEFT JOIN
 * gives a row with found = false for a UID that does not exist. The large
 * columns only travel when wanted. */
/* One index probe per requested UID (LATERAL): the plan does not depend on
 * the planner's row estimate for the mailbox, which right after a bulk
 * fill (before autovacuum analysed it) made a plain join scan the whole
 * mailbox for every batch -- quadratic in the mailbox size (measured in
 * tests/bench/imap_bench.py). */
#define SQL_FETCH_COLUMNS \
	"       m.expunged_at IS NOT NULL, m.flags," \
	"       array_to_string(m.keywords, ' '), m.updated_modseq, m.size," \
	"       floor(extract(epoch FROM m.internal_date))::bigint, m.content_hash," \
	"       CASE WHEN $3::int & 4 <> 0 AND m.imap_envelope IS NULL" \
	"            THEN m.envelope::text END," \
	"       CASE WHEN $3::int & 8 <> 0" \
	"              OR ($3::int & 32 <> 0 AND m.imap_bodystructure IS NULL)" \
	"            THEN m.bodystructure::text END," \
	"       CASE WHEN $3::int & 16 <> 0 THEN m.raw_headers END," \
	"       CASE WHEN $3::int & 4 <> 0 THEN m.imap_envelope END," \
	"       CASE WHEN $3::int & 32 <> 0 THEN m.imap_bodystructure END"

static const char sql_fetch[] =
	"SELECT o.uid, m.uid IS NOT NULL," SQL_FETCH_COLUMNS
	"  FROM unnest($2::bigint[]) WITH ORDINALITY AS o (uid, ord)"
	"  LEFT JOIN LATERAL (SELECT * FROM messages x"
	"                      WHERE x.mailbox_id = $1 AND x.uid = o.uid LIMIT 1) m ON true"
	" ORDER BY o.ord";

/* The same for a dense set of UIDs (most FETCHes: 1:*, a screenful): one
 * index range scan from $2 to $4 instead of a probe per UID; rows in UID
 * order, matched to the request in C. */
static const char sql_fetch_range[] =
	"SELECT m.uid, true," SQL_FETCH_COLUMNS
	"  FROM messages m"
	" WHERE m.mailbox_id = $1 AND m.uid BETWEEN $2::bigint AND $4::bigint"
	" ORDER BY m.uid";

/* Decodes a bytea in hex output format ("\x4142"). */
static int bytea_decode(const char *text, char **out_r, size_t *len_r, struct sora_error *err)
{
	size_t n = strlen(text), i;
	char *out;

	if (n < 2 || text[0] != '\\' || text[1] != 'x' || (n - 2) % 2 != 0)
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "raw_headers: not in bytea hex format");
	out = malloc((n - 2) / 2 + 1);
	if (out == NULL)
		return oom(err);
	for (i = 0; i < (n - 2) / 2; i++) {
		int hi = sora_hex_value((unsigned char)text[2 + 2 * i]);
		int lo = sora_hex_value((unsigned char)text[3 + 2 * i]);

		if (hi < 0 || lo < 0) {
			free(out);
			return sora_error_set(err, SORA_ERR_PERMANENT,
					      "raw_headers: bad hex digit");
		}
		out[i] = (char)(hi << 4 | lo);
	}
	out[i] = '\0';
	*out_r = out;
	*len_r = i;
	return 0;
}

static int fetch_row(const PGresult *res, int i, struct sora_msgs_row *row,
		     struct sora_error *err)
{
	int64_t date;

	if (get_u32(res, i, 0, &row->uid, err) < 0)
		return -1;
	row->found = PQgetvalue(res, i, 1)[0] == 't';
	if (!row->found)
		return 0;
	row->expunged = PQgetvalue(res, i, 2)[0] == 't';
	if (read_state(res, i, 0, 3, 5, 4, &row->state, err) < 0 ||
	    get_u64(res, i, 6, &row->size, err) < 0 ||
	    sora_db_get_i64(res, i, 7, &date, err) < 0)
		return -1;
	row->internal_date = date;
	snprintf(row->content_hash, sizeof(row->content_hash), "%s", PQgetvalue(res, i, 8));
	if (!PQgetisnull(res, i, 9) && (row->envelope_json = strdup(PQgetvalue(res, i, 9))) == NULL)
		return oom(err);
	if (!PQgetisnull(res, i, 10) &&
	    (row->structure_json = strdup(PQgetvalue(res, i, 10))) == NULL)
		return oom(err);
	if (!PQgetisnull(res, i, 11) &&
	    bytea_decode(PQgetvalue(res, i, 11), &row->raw_headers, &row->raw_headers_len, err) < 0)
		return -1;
	if (!PQgetisnull(res, i, 12) &&
	    (row->imap_envelope = strdup(PQgetvalue(res, i, 12))) == NULL)
		return oom(err);
	if (!PQgetisnull(res, i, 13) &&
	    (row->imap_bodystructure = strdup(PQgetvalue(res, i, 13))) == NULL)
		return oom(err);
	return 0;
}

/* Index of the row with uid in res (rows in ascending UID order), or -1. */
static int result_find_uid(const PGresult *res, uint32_t uid)
{
	int a = 0, b = PQntuples(res);

	while (a < b) {
		int mid = a + (b - a) / 2;
		uint64_t v = strtoull(PQgetvalue(res, mid, 0), NULL, 10);

		if (v == uid)
			return mid;
		if (v < uid)
			a = mid + 1;
		else
			b = mid;
	}
	return -1;
}

/* sora_msgs_fetch for UIDs within [lo, hi], a range at most twice their
 * number: rows_r->rows is allocated by the caller. */
static int fetch_range(struct sora_db_conn *conn, const char *mbox, const char *wants,
		       uint32_t lo, uint32_t hi, const uint32_t *uids, size_t count,
		       struct sora_msgs_rows *rows_r, struct sora_error *err)
{
	char los[I64_SIZE], his[I64_SIZE];
	const char *params[4] = { mbox, los, wants, his };
	PGresult *res = NULL;
	int rc = -1;

	fmt_i64(los, lo);
	fmt_i64(his, hi);
	if (sora_db_exec_prepared(conn, SORA_DB_CLASS_DEFAULT, "sora_msgs_fetch_range_v1",
				  sql_fetch_range, 4, params, NULL, NULL, 0, &res, NULL, err) < 0)
		return -1;
	for (size_t i = 0; i < count; i++) {
		int row = result_find_uid(res, uids[i]);

		rows_r->count++;
		if (row < 0) {
			rows_r->rows[i].uid = uids[i];
			continue;
		}
		if (fetch_row(res, row, &rows_r->rows[i], err) < 0)
			goto out;
	}
	rc = 0;
out:
	PQclear(res);
	return rc;
}

int sora_msgs_fetch(struct sora_db_conn *conn, int64_t mailbox_id, const uint32_t *uids,
		    size_t count, unsigned int want, struct sora_msgs_rows *rows_r,
		    struct sora_error *err)
{
	char mbox[I64_SIZE], wants[I64_SIZE], *arr = NULL;
	const char *params[3] = { mbox, NULL, wants };
	uint32_t lo = UINT32_MAX, hi = 0;
	PGresult *res = NULL;
	size_t i;
	int rc = -1;

	memset(rows_r, 0, sizeof(*rows_r));
	if (count == 0)
		return 0;
	if (count > INT32_MAX)
		return sora_error_set(err, SORA_ERR_LIMIT, "too many UIDs in one FETCH batch");
	arr = uid_array_literal(uids, count);
	if (arr == NULL)
		return oom(err);
	rows_r->rows = calloc(count, sizeof(*rows_r->rows));
	if (rows_r->rows == NULL) {
		oom(err);
		goto out;
	}
	fmt_i64(mbox, mailbox_id);
	snprintf(wants, sizeof(wants), "%u", want);
	for (i = 0; i < count; i++) {
		lo = uids[i] < lo ? uids[i] : lo;
		hi = uids[i] > hi ? uids[i] : hi;
	}
	if ((uint64_t)hi - lo + 1 <= 2 * (uint64_t)count) {
		rc = fetch_range(conn, mbox, wants, lo, hi, uids, count, rows_r, err);
		goto out;
	}
	params[1] = arr;
	/* Prepared: FETCH runs it once per batch, and the LATERAL probe's
	 * plan never depends on the parameters. */
	if (sora_db_exec_prepared(conn, SORA_DB_CLASS_DEFAULT, "sora_msgs_fetch_v2", sql_fetch, 3,
				  params, NULL, NULL, 0, &res, NULL, err) < 0)
		goto out;
	if ((size_t)PQntuples(res) != count) {
		sora_error_set(err, SORA_ERR_PERMANENT, "FETCH: %d rows for %zu UIDs",
			       PQntuples(res), count);
		goto out;
	}
	for (i = 0; i < count; i++) {
		rows_r->count++;
		if (fetch_row(res, (int)i, &rows_r->rows[i], err) < 0)
			goto out;
	}
	rc = 0;
out:
	PQclear(res);
	free(arr);
	if (rc < 0)
		sora_msgs_rows_free(rows_r);
	return rc;
}

void sora_msgs_rows_free(struct sora_msgs_rows *rows)
{
	size_t i;

	if (rows == NULL)
		return;
	for (i = 0; i < rows->count; i++) {
		free(rows->rows[i].state.keywords);
		free(rows->rows[i].envelope_json);
		free(rows->rows[i].structure_json);
		free(rows->rows[i].imap_envelope);
		free(rows->rows[i].imap_bodystructure);
		free(rows->rows[i].raw_headers);
	}
	free(rows->rows);
	rows->rows = NULL;
	rows->count = 0;
}

/* ---- transactions on one mailbox ---- */

static const char sql_lock_mailbox[] =
	"SELECT highest_modseq, uid_next, uid_validity, noselect, account_id"
	"  FROM mailboxes WHERE id = $1 FOR UPDATE";

struct locked {
	uint64_t modseq;
	uint64_t uid_next;      /* may be 2^32 */
	uint32_t uid_validity;
	int64_t account_id;
	bool found;             /* exists and is selectable */
};

/* Locks one mailbox row inside the current transaction. */
static int lock_mailbox(struct sora_db_conn *conn, int64_t id, struct locked *l,
			struct sora_error *err)
{
	char ids[I64_SIZE];
	const char *params[1] = { ids };
	PGresult *res = NULL;
	int rc = 0;

	memset(l, 0, sizeof(*l));
	fmt_i64(ids, id);
	if (run(conn, SORA_DB_CLASS_WRITE, sql_lock_mailbox, 1, params, &res, err) < 0)
		return -1;
	if (PQntuples(res) == 1 && PQgetvalue(res, 0, 3)[0] != 't') {
		l->found = true;
		if (get_u64(res, 0, 0, &l->modseq, err) < 0 ||
		    get_u64(res, 0, 1, &l->uid_next, err) < 0 ||
		    get_u32(res, 0, 2, &l->uid_validity, err) < 0 ||
		    sora_db_get_i64(res, 0, 4, &l->account_id, err) < 0)
			rc = -1;
	}
	PQclear(res);
	return rc;
}

static int finish(struct sora_db_conn *conn, int rc, struct sora_error *err)
{
	if (rc < 0) {
		sora_db_rollback(conn);
		return -1;
	}
	return sora_db_commit(conn, err);
}

static const char sql_set_modseq[] =
	"UPDATE mailboxes SET highest_modseq = $2, updated_at = now() WHERE id = $1";

static int set_modseq(struct sora_db_conn *conn, const char *mbox, uint64_t modseq,
		      struct sora_error *err)
{
	char ms[I64_SIZE];
	const char *params[2] = { mbox, ms };

	snprintf(ms, sizeof(ms), "%" PRIu64, modseq);
	return run(conn, SORA_DB_CLASS_WRITE, sql_set_modseq, 2, params, NULL, err);
}

/* ---- STORE ---- */

static const char sql_store_read[] =
	"SELECT uid, flags, array_to_string(keywords, ' '), updated_modseq FROM messages"
	" WHERE mailbox_id = $1 AND uid = ANY ($2::bigint[]) AND expunged_at IS NULL"
	" ORDER BY uid";

/* One statement for every changed row: parallel arrays of UID, new flags
 * and new keywords (space separated, split again in SQL). */
static const char sql_store_write[] =
	"UPDATE messages m SET flags = v.flags, keywords = string_to_array(v.kw, ' '),"
	"       updated_modseq = $2"
	"  FROM unnest($3::bigint[], $4::int[], $5::text[]) AS v (uid, flags, kw)"
	" WHERE m.mailbox_id = $1 AND m.uid = v.uid AND m.expunged_at IS NULL";

/* Applies op to one message's keywords. *changed_r tells whether the set
 * differs case-insensitively from the old one; a keyword already present
 * keeps its stored spelling. */
static char *apply_keywords(const char *old_kw, const struct kwlist *req,
			    enum sora_msgs_store_op op, bool *changed_r)
{
	struct kwlist old, res;
	size_t i;
	char *s = NULL;
	bool changed = false;

	if (kw_split(old_kw, false, &old) < 0)
		return NULL;
	res.count = 0;
	res.items = malloc((old.count + req->count + 1) * sizeof(*res.items));
	if (res.items == NULL)
		goto out;
	switch (op) {
	case SORA_MSGS_STORE_ADD:
		for (i = 0; i < old.count; i++)
			res.items[res.count++] = old.items[i];
		for (i = 0; i < req->count; i++)
			if (!kw_in(&old, req->items[i])) {
				res.items[res.count++] = req->items[i];
				changed = true;
			}
		break;
	case SORA_MSGS_STORE_REMOVE:
		for (i = 0; i < old.count; i++) {
			if (kw_in(req, old.items[i]))
				changed = true;
			else
				res.items[res.count++] = old.items[i];
		}
		break;
	case SORA_MSGS_STORE_SET:
	default:
		for (i = 0; i < req->count; i++) {
			const struct sora_str *have = kw_find(&old, req->items[i]);

			if (have == NULL)
				changed = true;
			res.items[res.count++] = have != NULL ? *have : req->items[i];
		}
		for (i = 0; i < old.count; i++)
			if (!kw_in(req, old.items[i]))
				changed = true;
		break;
	}
	s = kw_join(&res);
	*changed_r = changed;
out:
	kwlist_free(&old);
	kwlist_free(&res);
	return s;
}

/* Number of keywords in a joined list. */
static size_t kw_count(const char *s)
{
	size_t n = 0;

	for (; *s != '\0'; s++)
		if (*s != ' ' && (s[1] == ' ' || s[1] == '\0'))
			n++;
	return n;
}

/* Appends s to a text[] literal as a quoted element. */
static void append_quoted(char **p, const char *s)
{
	char *q = *p;

	*q++ = '"';
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			*q++ = '\\';
		*q++ = *s;
	}
	*q++ = '"';
	*p = q;
}

static int store_locked(struct sora_db_conn *conn, const char *mbox, const char *arr,
			enum sora_msgs_store_op op, unsigned int flags, const struct kwlist *req,
			uint64_t unchangedsince, uint64_t modseq,
			struct sora_msgs_store_result *r, struct sora_error *err)
{
	const char *params[5] = { mbox, arr };
	char ms[I64_SIZE], *uids_s = NULL, *flags_s = NULL, *kw_s = NULL;
	PGresult *res = NULL;
	size_t i, n, nchanged = 0, kwlen = 0;
	int rc = -1;

	if (run(conn, SORA_DB_CLASS_WRITE, sql_store_read, 2, params, &res, err) < 0)
		return -1;
	n = (size_t)PQntuples(res);
	if (n > 0) {
		r->states = calloc(n, sizeof(*r->states));
		r->changed = calloc(n, sizeof(*r->changed));
		r->modified.uids = malloc(n * sizeof(*r->modified.uids));
		if (r->states == NULL || r->changed == NULL || r->modified.uids == NULL) {
			oom(err);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		struct sora_msgs_state *st = &r->states[i];
		unsigned int nflags;
		bool kw_changed = false;
		char *nkw;

		r->state_count++;
		if (read_state(res, (int)i, 0, 1, 3, 2, st, err) < 0)
			goto out;
		if (unchangedsince != 0 && st->modseq > unchangedsince) {
			r->modified.uids[r->modified.count++] = st->uid;
			continue;
		}
		nflags = op == SORA_MSGS_STORE_SET ? flags
			 : op == SORA_MSGS_STORE_ADD ? st->flags | flags
						     : st->flags & ~flags;
		nflags &= FLAGS_MASK;
		nkw = apply_keywords(st->keywords, req, op, &kw_changed);
		if (nkw == NULL) {
			oom(err);
			goto out;
		}
		if (kw_changed && kw_count(nkw) > SORA_MSGS_KEYWORDS_MAX) {
			free(nkw);
			sora_error_set(err, SORA_ERR_LIMIT, "UID %" PRIu32 " would have more than %d"
				       " keywords", st->uid, SORA_MSGS_KEYWORDS_MAX);
			goto out;
		}
		if (nflags == st->flags && !kw_changed) {
			free(nkw);
			continue;
		}
		free(st->keywords);
		st->keywords = nkw;
		st->flags = nflags;
		st->modseq = modseq;
		r->changed[i] = true;
		nchanged++;
		kwlen += strlen(nkw) * 2 + 3;
	}
	r->highest_modseq = modseq - 1;
	if (nchanged == 0) {
		rc = 0;
		goto out;
	}
	/* Parallel arrays of the changed rows for one UPDATE. */
	uids_s = malloc(nchanged * 11 + 3);
	flags_s = malloc(nchanged * 3 + 3);
	kw_s = malloc(kwlen + nchanged + 3);
	if (uids_s == NULL || flags_s == NULL || kw_s == NULL) {
		oom(err);
		goto out;
	}
	{
		char *pu = uids_s, *pf = flags_s, *pk = kw_s;
		bool first = true;

		*pu++ = '{';
		*pf++ = '{';
		*pk++ = '{';
		for (i = 0; i < n; i++) {
			if (!r->changed[i])
				continue;
			if (!first) {
				*pu++ = ',';
				*pf++ = ',';
				*pk++ = ',';
			}
			first = false;
			pu += put_u32(pu, r->states[i].uid);
			pf += put_u32(pf, r->states[i].flags);
			append_quoted(&pk, r->states[i].keywords);
		}
		memcpy(pu, "}", 2);
		memcpy(pf, "}", 2);
		memcpy(pk, "}", 2);
	}
	snprintf(ms, sizeof(ms), "%" PRIu64, modseq);
	{
		const char *wparams[5] = { mbox, ms, uids_s, flags_s, kw_s };

		PQclear(res);
		res = NULL;
		if (run(conn, SORA_DB_CLASS_WRITE, sql_store_write, 5, wparams, &res, err) < 0)
			goto out;
		if (strtoull(PQcmdTuples(res), NULL, 10) != nchanged) {
			/* Only a writer that skipped the mailbox lock can do
			 * this; the transaction is rolled back. */
			sora_error_set(err, SORA_ERR_TEMPORARY,
				       "STORE: messages changed under the mailbox lock");
			goto out;
		}
	}
	if (set_modseq(conn, mbox, modseq, err) < 0)
		goto out;
	r->highest_modseq = modseq;
	rc = 0;
out:
	PQclear(res);
	free(uids_s);
	free(flags_s);
	free(kw_s);
	return rc;
}

int sora_msgs_store(struct sora_db_conn *conn, int64_t mailbox_id, const uint32_t *uids,
		    size_t count, enum sora_msgs_store_op op, unsigned int flags,
		    const char *keywords, uint64_t unchangedsince,
		    struct sora_msgs_store_result *res_r, struct sora_error *err)
{
	char mbox[I64_SIZE], *arr = NULL;
	struct kwlist req = { 0 };
	struct locked l;
	int rc;

	memset(res_r, 0, sizeof(*res_r));
	if (kw_split(keywords, true, &req) < 0)
		return oom(err);
	if (req.count > SORA_MSGS_KEYWORDS_MAX) {
		kwlist_free(&req);
		return sora_error_set(err, SORA_ERR_LIMIT, "more than %d keywords",
				      SORA_MSGS_KEYWORDS_MAX);
	}
	arr = uid_array_literal(uids, count);
	if (arr == NULL) {
		kwlist_free(&req);
		return oom(err);
	}
	fmt_i64(mbox, mailbox_id);
	if (sora_db_begin(conn, SORA_DB_CLASS_WRITE, err) < 0) {
		rc = -1;
		goto out;
	}
	rc = lock_mailbox(conn, mailbox_id, &l, err);
	if (rc == 0 && !l.found)
		rc = sora_error_set(err, SORA_ERR_CONFLICT, "mailbox %" PRId64 " is gone",
				    mailbox_id);
	if (rc == 0)
		rc = store_locked(conn, mbox, arr, op, flags, &req, unchangedsince, l.modseq + 1,
				  res_r, err);
	rc = finish(conn, rc, err);
out:
	if (rc < 0)
		sora_msgs_store_result_free(res_r);
	kwlist_free(&req);
	free(arr);
	return rc;
}

void sora_msgs_store_result_free(struct sora_msgs_store_result *res)
{
	if (res == NULL)
		return;
	states_free(res->states, res->state_count);
	res->states = NULL;
	res->state_count = 0;
	free(res->changed);
	res->changed = NULL;
	sora_msgs_uids_free(&res->modified);
}

/* ---- EXPUNGE ---- */

static const char sql_expunge_all[] =
	"UPDATE messages SET expunged_at = now(), expunged_modseq = $2"
	" WHERE mailbox_id = $1 AND expunged_at IS NULL AND flags & 8 <> 0 RETURNING uid";
static const char sql_expunge_uids[] =
	"UPDATE messages SET expunged_at = now(), expunged_modseq = $2"
	" WHERE mailbox_id = $1 AND expunged_at IS NULL AND flags & 8 <> 0"
	"   AND uid = ANY ($3::bigint[]) RETURNING uid";

/* Collects the uid column of res, sorted ascending. */
static int result_uids(const PGresult *res, struct sora_msgs_uids *out, struct sora_error *err)
{
	size_t n = (size_t)PQntuples(res), i;

	out->uids = NULL;
	out->count = 0;
	if (n == 0)
		return 0;
	out->uids = malloc(n * sizeof(*out->uids));
	if (out->uids == NULL)
		return oom(err);
	for (i = 0; i < n; i++) {
		if (get_u32(res, (int)i, 0, &out->uids[i], err) < 0) {
			sora_msgs_uids_free(out);
			return -1;
		}
	}
	out->count = n;
	qsort(out->uids, n, sizeof(*out->uids), cmp_u32);
	return 0;
}

int sora_msgs_expunge(struct sora_db_conn *conn, int64_t mailbox_id, const uint32_t *uids,
		      size_t count, struct sora_msgs_uids *expunged_r, uint64_t *modseq_r,
		      struct sora_error *err)
{
	char mbox[I64_SIZE], ms[I64_SIZE], *arr = NULL;
	const char *params[3] = { mbox, ms, NULL };
	PGresult *res = NULL;
	struct locked l;
	uint64_t modseq = 0;
	int rc;

	memset(expunged_r, 0, sizeof(*expunged_r));
	if (uids != NULL) {
		arr = uid_array_literal(uids, count);
		if (arr == NULL)
			return oom(err);
		params[2] = arr;
	}
	fmt_i64(mbox, mailbox_id);
	if (sora_db_begin(conn, SORA_DB_CLASS_WRITE, err) < 0) {
		free(arr);
		return -1;
	}
	rc = lock_mailbox(conn, mailbox_id, &l, err);
	if (rc == 0 && !l.found)
		rc = sora_error_set(err, SORA_ERR_CONFLICT, "mailbox %" PRId64 " is gone",
				    mailbox_id);
	if (rc == 0) {
		modseq = l.modseq;
		snprintf(ms, sizeof(ms), "%" PRIu64, l.modseq + 1);
		rc = run(conn, SORA_DB_CLASS_WRITE, uids != NULL ? sql_expunge_uids : sql_expunge_all,
			 uids != NULL ? 3 : 2, params, &res, err);
	}
	if (rc == 0)
		rc = result_uids(res, expunged_r, err);
	if (rc == 0 && expunged_r->count > 0) {
		modseq = l.modseq + 1;
		rc = set_modseq(conn, mbox, modseq, err);
	}
	PQclear(res);
	free(arr);
	rc = finish(conn, rc, err);
	if (rc < 0) {
		sora_msgs_uids_free(expunged_r);
		return -1;
	}
	if (modseq_r != NULL)
		*modseq_r = modseq;
	return 0;
}

/* ---- COPY / MOVE ---- */

static const char sql_find_dest[] =
	"SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2 AND NOT noselect";
static const char sql_dest_still[] =
	"SELECT 1 FROM mailboxes WHERE id = $1 AND account_id = $2 AND name = $3";
static const char sql_copy_read[] =
	"SELECT uid FROM messages"
	" WHERE mailbox_id = $1 AND uid = ANY ($2::bigint[]) AND expunged_at IS NULL"
	" ORDER BY uid";
/* Every column of the message but its place (mailbox, UID), its modseqs
 * and its expunge state. A column added to messages by a later migration
 * belongs here too. */
static const char sql_copy_insert[] =
	"INSERT INTO messages (account_id, mailbox_id, uid, content_hash, size, internal_date,"
	"       sent_date, subject, message_id, in_reply_to, references_hdr, from_text, to_text,"
	"       cc_text, bcc_text, sort_subject, sort_from, sort_to, sort_cc, sort_display_from,"
	"       sort_display_to, envelope, bodystructure, raw_headers, flags, keywords,"
	"       created_modseq, updated_modseq, sent_tz, imap_envelope, imap_bodystructure,"
	"       pop3_size, text_key)"
	" SELECT m.account_id, $2, v.dst, m.content_hash, m.size, m.internal_date, m.sent_date,"
	"       m.subject, m.message_id, m.in_reply_to, m.references_hdr, m.from_text, m.to_text,"
	"       m.cc_text, m.bcc_text, m.sort_subject, m.sort_from, m.sort_to, m.sort_cc,"
	"       m.sort_display_from, m.sort_display_to, m.envelope, m.bodystructure,"
	"       m.raw_headers, m.flags, m.keywords, $3, $3, m.sent_tz, m.imap_envelope,"
	"       m.imap_bodystructure, m.pop3_size, m.text_key"
	"  FROM unnest($4::bigint[], $5::bigint[]) AS v (src, dst)"
	"  JOIN messages m ON m.mailbox_id = $1 AND m.uid = v.src AND m.expunged_at IS NULL"
	" ORDER BY v.src";
static const char sql_copy_dest_counters[] =
	"UPDATE mailboxes SET uid_next = $2, highest_modseq = $3, updated_at = now()"
	" WHERE id = $1";
static const char sql_move_expunge[] =
	"UPDATE messages SET expunged_at = now(), expunged_modseq = $2"
	" WHERE mailbox_id = $1 AND uid = ANY ($3::bigint[]) AND expunged_at IS NULL";

static int copy_locked(struct sora_db_conn *conn, int64_t account_id, int64_t src_id,
		       int64_t dst_id, const char *dest, const char *arr, bool move,
		       struct sora_msgs_copy_result *r, struct sora_error *err)
{
	char src[I64_SIZE], dst[I64_SIZE], acc[I64_SIZE], ms[I64_SIZE], next[I64_SIZE];
	char *src_s = NULL, *dst_s = NULL;
	struct locked ls, ld;
	uint64_t dst_modseq, src_modseq;
	PGresult *res = NULL;
	size_t i, n;
	int rc = -1;

	fmt_i64(src, src_id);
	fmt_i64(dst, dst_id);
	fmt_i64(acc, account_id);
	/* Lower id first: COPY a->b and b->a at once cannot deadlock. */
	if (src_id <= dst_id) {
		if (lock_mailbox(conn, src_id, &ls, err) < 0)
			return -1;
		if (dst_id == src_id)
			ld = ls;
		else if (lock_mailbox(conn, dst_id, &ld, err) < 0)
			return -1;
	} else {
		if (lock_mailbox(conn, dst_id, &ld, err) < 0 ||
		    lock_mailbox(conn, src_id, &ls, err) < 0)
			return -1;
	}
	if (!ls.found || ls.account_id != account_id)
		return sora_error_set(err, SORA_ERR_CONFLICT, "source mailbox %" PRId64 " is gone",
				      src_id);
	if (!ld.found || ld.account_id != account_id)
		return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such target mailbox");
	{
		/* Renamed between the look-up and the lock: not the mailbox
		 * the client named any more. */
		const char *params[3] = { dst, acc, dest };

		if (run(conn, SORA_DB_CLASS_WRITE, sql_dest_still, 3, params, &res, err) < 0)
			return -1;
		n = (size_t)PQntuples(res);
		PQclear(res);
		res = NULL;
		if (n != 1)
			return sora_error_set(err, SORA_ERR_NOT_FOUND, "no such target mailbox");
	}
	r->dest_mailbox_id = dst_id;
	r->dest_uid_validity = ld.uid_validity;
	r->source_modseq = ls.modseq;
	{
		const char *params[2] = { src, arr };

		if (run(conn, SORA_DB_CLASS_WRITE, sql_copy_read, 2, params, &res, err) < 0)
			return -1;
	}
	if (result_uids(res, &r->src_uids, err) < 0)
		goto out;
	n = r->src_uids.count;
	if (n == 0) {
		rc = 0;
		goto out;
	}
	if (ld.uid_next + n - 1 > UID_MAX) {
		sora_error_set(err, SORA_ERR_LIMIT, "target mailbox has no UIDs left");
		goto out;
	}
	r->dest_uids.uids = malloc(n * sizeof(*r->dest_uids.uids));
	if (r->dest_uids.uids == NULL) {
		oom(err);
		goto out;
	}
	for (i = 0; i < n; i++)
		r->dest_uids.uids[i] = (uint32_t)(ld.uid_next + i);
	r->dest_uids.count = n;
	src_s = uid_array_literal(r->src_uids.uids, n);
	dst_s = uid_array_literal(r->dest_uids.uids, n);
	if (src_s == NULL || dst_s == NULL) {
		oom(err);
		goto out;
	}
	/* Into the same mailbox, one new modseq serves both sides. */
	dst_modseq = ld.modseq + 1;
	src_modseq = src_id == dst_id ? dst_modseq : ls.modseq + 1;
	snprintf(ms, sizeof(ms), "%" PRIu64, dst_modseq);
	PQclear(res);
	res = NULL;
	{
		const char *params[5] = { src, dst, ms, src_s, dst_s };

		if (run(conn, SORA_DB_CLASS_WRITE, sql_copy_insert, 5, params, &res, err) < 0)
			goto out;
		if (strtoull(PQcmdTuples(res), NULL, 10) != n) {
			sora_error_set(err, SORA_ERR_TEMPORARY,
				       "COPY: messages changed under the mailbox lock");
			goto out;
		}
	}
	snprintf(next, sizeof(next), "%" PRIu64, ld.uid_next + n);
	{
		const char *params[3] = { dst, next, ms };

		if (run(conn, SORA_DB_CLASS_WRITE, sql_copy_dest_counters, 3, params, NULL, err) < 0)
			goto out;
	}
	if (move) {
		const char *params[3] = { src, ms, src_s };

		snprintf(ms, sizeof(ms), "%" PRIu64, src_modseq);
		if (run(conn, SORA_DB_CLASS_WRITE, sql_move_expunge, 3, params, NULL, err) < 0)
			goto out;
		if (src_id != dst_id && set_modseq(conn, src, src_modseq, err) < 0)
			goto out;
		r->source_modseq = src_modseq;
	} else if (src_id == dst_id) {
		r->source_modseq = dst_modseq;
	}
	rc = 0;
out:
	PQclear(res);
	free(src_s);
	free(dst_s);
	return rc;
}

int sora_msgs_copy(struct sora_db_conn *conn, int64_t account_id, int64_t mailbox_id,
		   const uint32_t *uids, size_t count, const char *dest, bool move,
		   struct sora_msgs_copy_result *res_r, struct sora_error *err)
{
	char norm[SORA_MAILBOX_NAME_MAX + 1], acc[I64_SIZE], *arr = NULL;
	const char *params[2] = { acc, norm };
	PGresult *res = NULL;
	int64_t dst_id = 0;
	int rc;

	memset(res_r, 0, sizeof(*res_r));
	if (sora_mailbox_name_normalize(dest, norm, sizeof(norm), err) < 0)
		return -1;
	fmt_i64(acc, account_id);
	if (run(conn, SORA_DB_CLASS_DEFAULT, sql_find_dest, 2, params, &res, err) < 0)
		return -1;
	rc = PQntuples(res) == 1 ? sora_db_get_i64(res, 0, 0, &dst_id, err)
				 : sora_error_set(err, SORA_ERR_NOT_FOUND, "no such target mailbox");
	PQclear(res);
	if (rc < 0)
		return -1;
	arr = uid_array_literal(uids, count);
	if (arr == NULL)
		return oom(err);
	if (sora_db_begin(conn, SORA_DB_CLASS_WRITE, err) < 0) {
		free(arr);
		return -1;
	}
	rc = copy_locked(conn, account_id, mailbox_id, dst_id, norm, arr, move, res_r, err);
	rc = finish(conn, rc, err);
	free(arr);
	if (rc < 0)
		sora_msgs_copy_result_free(res_r);
	return rc;
}

void sora_msgs_copy_result_free(struct sora_msgs_copy_result *res)
{
	if (res == NULL)
		return;
	sora_msgs_uids_free(&res->src_uids);
	sora_msgs_uids_free(&res->dest_uids);
}
