/* libFuzzer target for the AUTHENTICATE PLAIN response decoder
 * (common/session/imap-front.h): any client line must decode or be
 * refused, and a decoded response must keep the RFC 4616 shape: three
 * fields inside the decoded buffer, no NUL inside any of them, a
 * non-empty authentication identity. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/session/imap-front.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static void inside(const struct sora_buf *b, struct sora_str s)
{
	CHECK(s.len == 0 || (s.p >= b->data && s.p + s.len <= b->data + b->len));
	CHECK(s.len == 0 || memchr(s.p, '\0', s.len) == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_buf buf = { 0 };
	struct sora_str z, c, p;

	if (sora_sasl_plain_decode(sora_str_make((const char *)data, size), &buf, &z, &c, &p) == 0) {
		CHECK(c.len > 0);
		inside(&buf, z);
		inside(&buf, c);
		inside(&buf, p);
		CHECK(z.len + c.len + p.len + 2 == buf.len);
	}
	sora_buf_free(&buf);
	return 0;
}
