/* libFuzzer target for the SEARCH program parser
 * (common/proto/imap-search.h).
 *
 * Input: byte 0 picks options (bit 0: allow RETURN, bit 1: stream
 * literals over 4 bytes, bit 2: UTF-8 in quoted strings), the rest is a
 * client byte stream. Every command the command parser completes has its
 * arguments handed to sora_imap_search_parse(), and a successful program
 * must respect the header's promises: the depth and key limits, OR with
 * two children and NOT with one, NUL-free valid UTF-8 strings, the
 * summary flags matching the tree, a PARTIAL range that is ordered and
 * never comes with ALL. Every atom and string also goes
 * through sora_imap_date_parse(), whose day numbers must stay within
 * years 0-9999. The same arguments also go to sora_imap_sort_parse()
 * (bit 0 also allows ESORT's RETURN, bit 3 SORT=DISPLAY's keys): a SORT
 * program has 1..SORA_IMAP_SORT_CRITERIA_MAX known keys, DISPLAY keys
 * only when allowed, no CONTEXT=SORT options, and a search part that
 * keeps the same promises. ASan checks that error paths free. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/proto/imap-parser.h"
#include "common/proto/imap-search.h"
#include "common/proto/imap-types.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct walk {
	size_t keys;
	bool modseq;
	bool saved;
};

static void check_key(const struct sora_imap_search_key *k, unsigned depth, struct walk *w)
{
	CHECK(depth <= SORA_IMAP_SEARCH_DEPTH_MAX);
	w->keys++;
	CHECK((k->child_count == 0) == (k->children == NULL));
	switch (k->type) {
	case SORA_SEARCH_AND:
		CHECK(k->child_count > 0);
		break;
	case SORA_SEARCH_OR:
		CHECK(k->child_count == 2);
		break;
	case SORA_SEARCH_NOT:
		CHECK(k->child_count == 1);
		break;
	default:
		CHECK(k->child_count == 0);
		break;
	}
	if (k->type == SORA_SEARCH_SEQSET || k->type == SORA_SEARCH_UIDSET) {
		CHECK(k->set.last_result || k->set.count > 0);
		if (k->set.last_result)
			w->saved = true;
	}
	if (k->type == SORA_SEARCH_MODSEQ)
		w->modseq = true;
	if (k->type == SORA_SEARCH_FLAG || k->type == SORA_SEARCH_UNFLAG)
		CHECK(k->flag != 0 && (k->flag & (k->flag - 1)) == 0 && k->flag <= 16);
	if (k->type >= SORA_SEARCH_BCC && k->type <= SORA_SEARCH_HEADER) {
		CHECK(k->str != NULL);
		CHECK(sora_imap_utf8_valid(sora_str_c(k->str)));
	}
	if (k->type == SORA_SEARCH_KEYWORD || k->type == SORA_SEARCH_UNKEYWORD)
		CHECK(k->str != NULL && k->str[0] != '\0');
	CHECK((k->type == SORA_SEARCH_HEADER) == (k->header != NULL));
	for (size_t i = 0; i < k->child_count; i++)
		check_key(&k->children[i], depth + 1, w);
}

static void check_dates(const struct sora_imap_arg *args, size_t count)
{
	for (size_t i = 0; i < count; i++) {
		int64_t day;

		if (args[i].type == SORA_IMAP_ARG_LIST) {
			check_dates(args[i].list, args[i].list_count);
			continue;
		}
		/* 1-Jan-0000 .. 31-Dec-9999 */
		if (sora_imap_date_parse(args[i].str, &day) == 0)
			CHECK(day >= -719528 && day <= 2932896);
	}
}

static void check_sort(const struct sora_imap_command *cmd, unsigned int flags)
{
	struct sora_imap_sort_program prog;
	const char *error = NULL;
	int ret = sora_imap_sort_parse(cmd->args, cmd->args_count, flags, &prog, &error);

	if (ret != 0) {
		CHECK(ret == SORA_IMAP_SEARCH_SYNTAX || ret == SORA_IMAP_SEARCH_BADCHARSET);
		CHECK(error != NULL && prog.search.root.children == NULL && prog.count == 0);
		return;
	}
	struct walk w = { 0, false, false };

	CHECK(error == NULL);
	CHECK(prog.count >= 1 && prog.count <= SORA_IMAP_SORT_CRITERIA_MAX);
	for (size_t i = 0; i < prog.count; i++) {
		enum sora_imap_sort_key k = prog.criteria[i].key;

		CHECK(k >= SORA_SORT_ARRIVAL && k <= SORA_SORT_DISPLAYTO);
		if (k == SORA_SORT_DISPLAYFROM || k == SORA_SORT_DISPLAYTO)
			CHECK(flags & SORA_IMAP_SORT_ALLOW_DISPLAY);
	}
	CHECK((flags & SORA_IMAP_SORT_ALLOW_RETURN) || !prog.search.esearch);
	CHECK(!prog.search.esearch || prog.search.return_opts != 0);
	CHECK((prog.search.return_opts & (SORA_SEARCH_RETURN_UPDATE | SORA_SEARCH_RETURN_CONTEXT |
					  SORA_SEARCH_RETURN_PARTIAL)) == 0);
	CHECK(prog.search.root.type == SORA_SEARCH_AND && prog.search.root.child_count > 0);
	check_key(&prog.search.root, 0, &w);
	CHECK(w.keys - 1 <= SORA_IMAP_SEARCH_KEYS_MAX);
	CHECK(w.modseq == prog.search.has_modseq && w.saved == prog.search.uses_saved);
	sora_imap_sort_free(&prog);
	CHECK(prog.search.root.children == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_imap_parser_params pp = sora_imap_parser_default_params;
	struct sora_imap_parser *p;
	const char *in;
	size_t len, pos = 0;
	unsigned stalls = 0;
	bool allow_return;

	if (size < 1)
		return 0;
	allow_return = (data[0] & 1) != 0;
	if (data[0] & 2)
		pp.max_inline_literal = 4;
	pp.utf8_quoted = (data[0] & 4) != 0;
	in = (const char *)data + 1;
	len = size - 1;
	p = sora_imap_parser_new(&pp);
	CHECK(p != NULL);
	while (pos < len) {
		size_t used = 0;
		enum sora_imap_parse_result r = sora_imap_parser_feed(p, in + pos, len - pos, &used);

		pos += used;
		/* An event may consume nothing; the parser must move on the
		 * next call, never stall. */
		stalls = used == 0 ? stalls + 1 : 0;
		CHECK(stalls < 4);
		if (r == SORA_IMAP_PARSE_COMMAND) {
			const struct sora_imap_command *cmd = sora_imap_parser_command(p);
			struct sora_imap_search_program prog;
			const char *error = NULL;
			int ret;

			check_dates(cmd->args, cmd->args_count);
			check_sort(cmd, (allow_return ? SORA_IMAP_SORT_ALLOW_RETURN : 0u) |
					((data[0] & 8) ? SORA_IMAP_SORT_ALLOW_DISPLAY : 0u));
			ret = sora_imap_search_parse(cmd->args, cmd->args_count, allow_return, &prog,
						     &error);
			if (ret == 0) {
				struct walk w = { 0, false, false };

				CHECK(error == NULL);
				CHECK(prog.root.type == SORA_SEARCH_AND && prog.root.child_count > 0);
				CHECK(allow_return || !prog.esearch);
				CHECK(!prog.esearch || prog.return_opts != 0);
				/* PARTIAL: 1 <= lo <= hi, never with ALL
				 * (RFC 5267 §4.4); no range without it. */
				if (prog.return_opts & SORA_SEARCH_RETURN_PARTIAL) {
					CHECK(prog.partial_lo >= 1 && prog.partial_lo <= prog.partial_hi);
					CHECK(!(prog.return_opts & SORA_SEARCH_RETURN_ALL));
				} else {
					CHECK(prog.partial_lo == 0 && prog.partial_hi == 0);
				}
				check_key(&prog.root, 0, &w);
				/* The root is not a key the client sent. */
				CHECK(w.keys - 1 <= SORA_IMAP_SEARCH_KEYS_MAX);
				CHECK(w.modseq == prog.has_modseq && w.saved == prog.uses_saved);
				sora_imap_search_free(&prog);
				CHECK(prog.root.children == NULL);
			} else {
				CHECK(ret == SORA_IMAP_SEARCH_SYNTAX || ret == SORA_IMAP_SEARCH_BADCHARSET);
				CHECK(error != NULL && prog.root.children == NULL);
			}
		} else if (r == SORA_IMAP_PARSE_ERROR) {
			if (sora_imap_parser_error(p)->fatal)
				break;
		}
	}
	sora_imap_parser_free(&p);
	return 0;
}
