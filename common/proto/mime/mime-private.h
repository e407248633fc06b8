/* Internal interfaces shared by the files of the MIME module. Not for use
 * outside common/proto/mime/.
 *
 * Thread safety: everything here works on caller-owned state only. */
#ifndef SORA_PROTO_MIME_PRIVATE_H
#define SORA_PROTO_MIME_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/core/buf.h"
#include "common/core/str.h"
#include "common/proto/mime/mime.h"

/* ---- arena: bump allocator whose memory is freed all at once ---- */

/* Returns zeroed, 8-byte aligned memory, or NULL when out of memory. */
void *mime_arena_alloc(struct sora_mime_arena *arena, size_t size);
/* Bytes handed out so far. */
size_t mime_arena_used(const struct sora_mime_arena *arena);
/* Copies len bytes and adds a NUL after them (values may contain NUL, the
 * terminator is only a convenience). Returns -1 when out of memory. A NULL
 * p with len 0 gives an empty, non-NULL string. */
int mime_arena_strdup(struct sora_mime_arena *arena, const void *p, size_t len,
		      struct sora_str *out);
/* Like mime_arena_strdup but ASCII-lowercases the copy. */
int mime_arena_strdup_lower(struct sora_mime_arena *arena, const void *p, size_t len,
			    struct sora_str *out);

/* ---- RFC 822 / 2045 lexical scanner (modelled on Dovecot's rfc822-parser) ----
 *
 * All functions return 1 when more input follows, 0 at the end of input and
 * -1 on a syntax error, and skip the CFWS after what they read. Output is
 * appended to an unbounded sora_buf: it never grows past the input's size. */
struct mime_lex {
	const unsigned char *data, *end;
	/* When non-NULL, the text of the last comment skipped is kept here. */
	struct sora_buf *last_comment;
	/* Set when appending to an output buffer failed (out of memory). */
	bool oom;
};

void mime_lex_init(struct mime_lex *lex, struct sora_str input, struct sora_buf *last_comment);
bool mime_is_atext(unsigned char c);
int mime_lex_skip_cfws(struct mime_lex *lex);
int mime_lex_quoted_string(struct mime_lex *lex, struct sora_buf *out);
int mime_lex_atom(struct mime_lex *lex, struct sora_buf *out);
int mime_lex_dot_atom(struct mime_lex *lex, struct sora_buf *out);
/* Must be called with input left (lex->data < lex->end). */
int mime_lex_local_dot_atom(struct mime_lex *lex, struct sora_buf *out);
int mime_lex_mime_token(struct mime_lex *lex, struct sora_buf *out);
int mime_lex_phrase(struct mime_lex *lex, struct sora_buf *out);
int mime_lex_domain(struct mime_lex *lex, struct sora_buf *out);

/* ---- Content-* field values ---- */

/* A parameter list being built (malloc'd while parsing, copied to the
 * message arena by mime_params_store). Names and values are stored back to
 * back in data; items[] locates them. */
struct mime_param_ref {
	size_t name_off, name_len, value_off, value_len;
};

struct mime_param_list {
	struct sora_buf data;
	struct mime_param_ref *items;
	unsigned int count, alloc;
	bool oom;
};

void mime_param_list_init(struct mime_param_list *list);
void mime_param_list_free(struct mime_param_list *list);

/* Parses "; a=b; c*0=d ..." from lex's position to the end, merging RFC 2231
 * sections, into list (names lowercased). Never fails on syntax. */
void mime_parse_params(struct mime_lex *lex, struct mime_param_list *list);

/* Parses a Content-Type value. Returns 0 with *type and *subtype (into
 * type_out and subtype_out) and the parameters; the result follows Dovecot
 * for broken input (see mime.h). Returns -1 only when out of memory. */
int mime_parse_content_type(struct sora_str value, struct sora_buf *type_out,
			    struct sora_buf *subtype_out, struct mime_param_list *params);
/* Content-Disposition: 1 with the type and parameters, 0 when the value
 * has no disposition type, -1 when out of memory. */
int mime_parse_disposition(struct sora_str value, struct sora_buf *type_out,
			   struct mime_param_list *params);
/* Content-Transfer-Encoding: 1 with the token, 0 unless the value is one
 * token, -1 when out of memory. */
int mime_parse_encoding(struct sora_str value, struct sora_buf *out);
/* Content-Language: 1 with the tags NUL-separated in out and their number
 * in *count_r, 0 when there is none, -1 when out of memory. Tags before a
 * syntax error are kept, as Dovecot does. */
int mime_parse_language(struct sora_str value, struct sora_buf *out, unsigned int *count_r);

/* Copies a parameter list into the arena. Returns -1 when out of memory. */
int mime_params_store(struct sora_mime_arena *arena, const struct mime_param_list *list,
		      struct sora_mime_param **params_r, unsigned int *count_r);

/* ---- envelope ---- */

/* Parses the address fields of env->raw[] into env->addr[]. */
int mime_envelope_parse_addresses(struct sora_mime_arena *arena, struct sora_mime_envelope *env);

/* ---- base64 (RFC 4648, lenient decoder) ---- */

/* Decodes base64, skipping whitespace and stopping at '=' or any other byte
 * outside the alphabet. Appends to out; -1 when out of memory. */
int mime_base64_decode(const void *in, size_t len, struct sora_buf *out);
/* Encodes with padding and no line breaks. */
int mime_base64_encode(const void *in, size_t len, struct sora_buf *out);

static inline unsigned char mime_ascii_lower(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + 32) : c;
}

#endif
