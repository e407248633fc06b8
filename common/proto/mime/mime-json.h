/* Storing a parsed message in the database and getting it back.
 *
 * sora_mime_json_serialize() turns a parsed message into compact JSON (for
 * messages.bodystructure), sora_mime_json_deserialize() rebuilds an equal
 * message from it, so IMAP answers BODYSTRUCTURE, ENVELOPE and
 * BODY[1.2.MIME] (by offsets into the stored blob) without parsing the
 * message again. sora_mime_json_envelope() gives the top-level envelope
 * alone (for messages.envelope). Serializing the deserialized message gives
 * the same bytes again.
 *
 * Format, version 1 (the "v" member; a reader refuses other versions):
 *   {"v":1,"size":N,"vsize":N,"flags":N,"root":PART}
 *   PART: "o" header offset, "hs"/"bs" header/body size, "hv"/"bv" their
 *   CRLF sizes when different, "l" body lines, "f" part flags, "t"/"st"
 *   type/subtype, "p" parameters as a flat [name, value, ...] array, "id",
 *   "desc", "md5", "loc", "enc", "disp", "dp" (disposition parameters),
 *   "lang" [tags], "env" ENVELOPE, "h" kept header fields [name, value,
 *   ...] (only with SORA_MIME_JSON_HEADERS), "c" [children]. Absent members
 *   mean NIL / zero / empty.
 *   ENVELOPE: {"date", "subject", "from", "sender", "reply-to", "to", "cc",
 *   "bcc", "in-reply-to", "message-id"}: the raw field values; address
 *   lists are parsed again when read, so they stay in step with the parser.
 *   A string that is not valid UTF-8 or contains NUL (JSON and PostgreSQL
 *   jsonb cannot carry those) is written as {"b64":"<base64>"}.
 *
 * The reader checks the structure (offsets inside the message and inside
 * the parent, children in order, container flags) and fails cleanly on
 * anything else, so a corrupt row cannot make IMAP read outside a message.
 *
 * Ownership: output is appended to a caller-owned buffer; a deserialized
 * message is owned by the caller (sora_mime_message_free). Thread-safe. */
#ifndef SORA_PROTO_MIME_JSON_H
#define SORA_PROTO_MIME_JSON_H

#include <stddef.h>

#include "common/core/buf.h"
#include "common/proto/mime/mime.h"

#define SORA_MIME_JSON_VERSION 1

enum sora_mime_json_flags {
	/* Include the kept header fields of every part. */
	SORA_MIME_JSON_HEADERS = 1 << 0,
};

int sora_mime_json_serialize(const struct sora_mime_message *msg, unsigned int flags,
			     struct sora_buf *out, const char **error_r);
int sora_mime_json_deserialize(const void *data, size_t len, struct sora_mime_message **msg_r,
			       const char **error_r);

/* The root part's envelope as an ENVELOPE object ("{}" if it has none). */
int sora_mime_json_envelope(const struct sora_mime_message *msg, struct sora_buf *out,
			    const char **error_r);
/* Reads such an object into an envelope allocated from arena. */
int sora_mime_json_envelope_parse(const void *data, size_t len, struct sora_mime_arena *arena,
				  struct sora_mime_envelope **env_r, const char **error_r);

#endif
