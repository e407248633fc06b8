/* SEARCH in PostgreSQL: a parsed program (common/proto/imap-search.h) is
 * compiled into one parameterised SQL query over the messages of one
 * mailbox and run there, never by reading bodies in the process.
 *
 * What each key reads:
 *   flags, keywords, UID, sizes, dates, MODSEQ   messages columns
 *   FROM TO CC BCC SUBJECT                       the decoded *_text / subject
 *                                                 columns (case-insensitive
 *                                                 substring, ILIKE with the
 *                                                 pattern characters escaped)
 *   HEADER name value                            raw_headers (decoded
 *                                                 columns for the fields
 *                                                 above; other fields by
 *                                                 a case-insensitive match
 *                                                 over the header block)
 *   BODY                                         message_contents.text_body
 *   TEXT                                         header columns + text_body
 *   sequence numbers, $, RECENT/NEW/OLD          converted to UID sets
 *                                                 from the session's view
 *                                                 before the query
 * Expunged messages never match. Dates compare in UTC days (RFC 3501 says
 * date keys disregard time and timezone); SENT* keys use the Date: header
 * (messages.sent_date), falling back to the internal date when absent.
 *
 * Result cap: at most SORA_SEARCH_MAX_RESULTS UIDs are returned (the
 * security guide's limit, enforced with LIMIT in the query, so no more rows
 * ever reach the process); truncated says when more matched, while total
 * (COUNT) and max_uid (MAX) stay exact: window aggregates over all matches
 * computed by PostgreSQL in the same statement. The session then answers
 * with what it has and says so in the tagged reply ("OK [LIMIT]").
 *
 * Blocking: PostgreSQL; worker threads only.
 *
 * Ownership: *uids_r is owned by the caller (sora_msgs_uids_free). */
#ifndef SORA_STORE_SEARCH_H
#define SORA_STORE_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/store/messages.h"
#include "common/core/error.h"
#include "common/db/db.h"
#include "common/proto/imap-search.h"

#define SORA_SEARCH_MAX_RESULTS 1000
/* The security guide's MaxComplexSortResults: SORT by a text key (see
 * sora_search_sort_expensive) returns at most this many. */
#define SORA_SEARCH_MAX_SORT_RESULTS 500

/* The session's view of the mailbox, needed to resolve sequence numbers,
 * "$" and \Recent. */
struct sora_search_view {
	const uint32_t *uids;        /* sequence n = uids[n - 1], ascending */
	size_t count;
	const uint32_t *saved;       /* the saved result ("$"), ascending UIDs */
	size_t saved_count;
	uint32_t first_recent;       /* UIDs >= this are \Recent; 0 = none */
	/* Nonzero: only messages with UIDs up to this match (the last UID of
	 * the session's view, so that new arrivals it has not been told of
	 * neither take places under the cap nor count in total/max_uid). */
	uint32_t uid_max;
};

struct sora_search_result {
	struct sora_msgs_uids uids;  /* matching UIDs, ascending */
	bool truncated;              /* more than max_results matched */
	uint64_t total;              /* how many matched (exact, also past the cap:
	                                ESEARCH COUNT) */
	uint64_t highest_modseq;     /* of the matches, when the program has MODSEQ */
	uint32_t max_uid;            /* the highest matching UID (exact, also past
	                                the cap: ESEARCH MAX) */
};

/* Runs prog over the live messages of mailbox_id. max_results 0 means
 * SORA_SEARCH_MAX_RESULTS (larger values are held at it). view NULL is an
 * empty view: sequence numbers, "$", "*" and \Recent then match nothing.
 * "*" in a UID set is the last UID of the view. A program the parser
 * could not have produced (OR without two operands, an unknown flag or
 * key, nesting past SORA_IMAP_SEARCH_DEPTH_MAX) fails with
 * SORA_ERR_INVALID; database failures keep the database's class. */
int sora_search_run(struct sora_db_conn *conn, int64_t mailbox_id,
		    const struct sora_imap_search_program *prog,
		    const struct sora_search_view *view, size_t max_results,
		    struct sora_search_result *res_r, struct sora_error *err);
/* The same, skipping the first offset matches (in UID order): the
 * results offset+1 .. offset+max_results, for RETURN (PARTIAL) past the
 * cap (RFC 5267 §4.4). total is only known when at least one row came
 * back (0 otherwise); truncated says more matched after the window. */
int sora_search_run_window(struct sora_db_conn *conn, int64_t mailbox_id,
			   const struct sora_imap_search_program *prog,
			   const struct sora_search_view *view, uint64_t offset,
			   size_t max_results, struct sora_search_result *res_r,
			   struct sora_error *err);
/* SORT (RFC 5256, RFC 5957 DISPLAYFROM/DISPLAYTO): prog's search part
 * as sora_search_run_window() runs it, the UIDs in sort order (ties in
 * UID order), in the same single statement. Keys:
 *   ARRIVAL  internal_date        DATE  sent_date, else internal_date
 *   SIZE     size                 SUBJECT  sort_subject (base subject)
 *   FROM TO CC  sort_from/to/cc   DISPLAYFROM DISPLAYTO  sort_display_*
 * (the sort_* columns are computed when the row is written,
 * backend/store/msg-meta.h); text keys compare case-insensitively (see
 * search.c). Cap: sora_search_sort_cap(prog) results (max_results 0 or
 * larger is held at it); total and truncated as for SEARCH. */
int sora_search_sort(struct sora_db_conn *conn, int64_t mailbox_id,
		     const struct sora_imap_sort_program *prog,
		     const struct sora_search_view *view, uint64_t offset, size_t max_results,
		     struct sora_search_result *res_r, struct sora_error *err);
/* A sort by a text key (SUBJECT, FROM, TO, CC, DISPLAYFROM, DISPLAYTO):
 * every matching row's key is computed and sorted, no index serves it.
 * Such sorts are capped at SORA_SEARCH_MAX_SORT_RESULTS, the others
 * (ARRIVAL, DATE, SIZE) at SORA_SEARCH_MAX_RESULTS like SEARCH. */
bool sora_search_sort_expensive(const struct sora_imap_sort_program *prog);
size_t sora_search_sort_cap(const struct sora_imap_sort_program *prog);
void sora_search_result_free(struct sora_search_result *res);

#endif
