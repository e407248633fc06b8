/* libFuzzer target for the S3 driver's XML reader (backend/blob/blob-xml.h):
 * error documents and DeleteResult answers come from the network. Checks
 * memory safety, that every extracted text is NUL-terminated within its
 * buffer, and that iteration only moves forward inside the input. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend/blob/blob-xml.h"

static void text(struct sora_str xml, const char *name, size_t size)
{
	char out[300];

	memset(out, 'X', sizeof(out));
	if (sora_blob_xml_text(xml, name, out, size) < 0 && out[0] != '\0')
		abort();
	if (memchr(out, '\0', size) == NULL)
		abort();
	/* Nothing is written past the given size. */
	for (size_t i = size; i < sizeof(out); i++)
		if (out[i] != 'X')
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sora_str xml = sora_str_make((const char *)data, size), inner, scan;
	static const char *const names[] = { "Error", "Code", "Message", "Key", "Deleted" };
	int count = 0;

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		text(xml, names[i], 256);
		text(xml, names[i], 1);
		text(xml, names[i], 7);
	}
	scan = xml;
	while (sora_blob_xml_next(&scan, "Error", &inner)) {
		if (inner.p < xml.p || inner.p + inner.len > xml.p + xml.len)
			abort();
		if (scan.p < inner.p + inner.len || scan.p + scan.len != xml.p + xml.len)
			abort();
		text(inner, "Key", 256);
		text(inner, "Code", 64);
		if (++count > (int)size)
			abort();
	}

	/* Escaping any text gives output without raw markup characters. */
	struct sora_buf b;
	sora_buf_init(&b, 1 << 20);
	if (sora_blob_xml_escape(&b, xml) == 0) {
		for (size_t i = 0; i < b.len; i++)
			if (b.data[i] == '<' || b.data[i] == '>' || b.data[i] == '"' ||
			    b.data[i] == '\'' || (unsigned char)b.data[i] < 0x20)
				abort();
	}
	sora_buf_free(&b);
	return 0;
}
