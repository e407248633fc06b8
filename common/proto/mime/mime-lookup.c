/* Read-only queries on a parsed message: header fields, parameters and
 * IMAP section numbers. */
#include "common/proto/mime/mime-private.h"

bool sora_mime_header_get(const struct sora_mime_part *part, const char *name,
			  struct sora_str *value_r)
{
	for (unsigned int i = 0; i < part->header_count; i++) {
		if (sora_str_ieq_c(part->headers[i].name, name)) {
			*value_r = part->headers[i].value;
			return true;
		}
	}
	return false;
}

const struct sora_mime_param *sora_mime_param_find(const struct sora_mime_param *params,
						   unsigned int count, const char *name)
{
	for (unsigned int i = 0; i < count; i++) {
		if (sora_str_ieq_c(params[i].name, name))
			return &params[i];
	}
	return NULL;
}

/* Body part n (1-based) of a message whose top part is msg_part. */
static const struct sora_mime_part *message_body_part(const struct sora_mime_part *msg_part,
						      uint32_t n)
{
	const struct sora_mime_part *c;

	if ((msg_part->flags & SORA_MIME_PART_MULTIPART) == 0)
		return n == 1 ? msg_part : NULL;
	for (c = msg_part->children; c != NULL && n > 1; c = c->next)
		n--;
	return n == 1 ? c : NULL;
}

const struct sora_mime_part *sora_mime_part_find(const struct sora_mime_message *msg,
						 const uint32_t *path, unsigned int path_len)
{
	const struct sora_mime_part *part = msg->root;

	if (path_len == 0)
		return part;
	part = message_body_part(part, path[0]);
	for (unsigned int i = 1; i < path_len && part != NULL; i++) {
		if ((part->flags & SORA_MIME_PART_MULTIPART) != 0) {
			const struct sora_mime_part *c = part->children;
			uint32_t n = path[i];

			for (; c != NULL && n > 1; c = c->next)
				n--;
			part = n == 1 ? c : NULL;
		} else if ((part->flags & SORA_MIME_PART_MESSAGE) != 0 && part->children != NULL) {
			part = message_body_part(part->children, path[i]);
		} else {
			part = NULL;
		}
	}
	return part;
}

int sora_mime_section_range(const struct sora_mime_message *msg,
			    const uint32_t *path, unsigned int path_len,
			    enum sora_mime_section section,
			    uint64_t *offset_r, uint64_t *size_r)
{
	const struct sora_mime_part *part = sora_mime_part_find(msg, path, path_len);

	if (part == NULL)
		return -1;
	if (path_len == 0) {
		switch (section) {
		case SORA_MIME_SECTION_BODY:
			*offset_r = 0;
			*size_r = msg->size;
			return 0;
		case SORA_MIME_SECTION_HEADER:
			break;
		case SORA_MIME_SECTION_TEXT:
			break;
		case SORA_MIME_SECTION_MIME:
			return -1;
		}
	} else if (section == SORA_MIME_SECTION_HEADER || section == SORA_MIME_SECTION_TEXT) {
		/* HEADER and TEXT of a part name the encapsulated message. */
		if ((part->flags & SORA_MIME_PART_MESSAGE) == 0 || part->children == NULL)
			return -1;
		part = part->children;
	}
	switch (section) {
	case SORA_MIME_SECTION_MIME:
	case SORA_MIME_SECTION_HEADER:
		*offset_r = part->header_offset;
		*size_r = part->header_size;
		return 0;
	case SORA_MIME_SECTION_BODY:
	case SORA_MIME_SECTION_TEXT:
		*offset_r = sora_mime_part_body_offset(part);
		*size_r = part->body_size;
		return 0;
	}
	return -1;
}
