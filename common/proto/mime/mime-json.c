/* JSON form of a parsed message; see mime-json.h for the format. */
#include "common/proto/mime/mime-json.h"

#include "common/proto/mime/mime-decode.h"
#include "common/proto/mime/mime-private.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Offsets are stored as JSON numbers (doubles): exact up to 2^53. */
#define JSON_MAX_INT 9007199254740992.0

static const char *const env_keys[SORA_MIME_ENV_COUNT] = {
	"date", "subject", "from", "sender", "reply-to",
	"to", "cc", "bcc", "in-reply-to", "message-id",
};

static const unsigned int known_part_flags =
	SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE | SORA_MIME_PART_TEXT |
	SORA_MIME_PART_LIMITED | SORA_MIME_PART_HEADERS_TRUNCATED;

/* ---- writing ---- */

struct ser {
	bool oom;
	bool headers;
};

static cJSON *json_string(struct ser *s, struct sora_str str)
{
	cJSON *item;

	if (memchr(str.p, '\0', str.len) == NULL && sora_mime_utf8_valid(str.p, str.len)) {
		/* Strings in a message's arena are NUL-terminated. */
		item = cJSON_CreateString(str.len > 0 ? str.p : "");
	} else {
		struct sora_buf b64;

		sora_buf_init(&b64, 0);
		item = NULL;
		if (mime_base64_encode(str.p, str.len, &b64) == 0 &&
		    sora_buf_append(&b64, "", 1) == 0) {
			item = cJSON_CreateObject();
			if (item != NULL && cJSON_AddStringToObject(item, "b64", b64.data) == NULL) {
				cJSON_Delete(item);
				item = NULL;
			}
		}
		sora_buf_free(&b64);
	}
	if (item == NULL)
		s->oom = true;
	return item;
}

static void add_str(struct ser *s, cJSON *obj, const char *key, struct sora_str str)
{
	cJSON *item;

	if (str.p == NULL || s->oom)
		return;
	item = json_string(s, str);
	if (item != NULL && !cJSON_AddItemToObject(obj, key, item)) {
		cJSON_Delete(item);
		s->oom = true;
	}
}

static void add_num(struct ser *s, cJSON *obj, const char *key, uint64_t v)
{
	if (v == 0 || s->oom)
		return;
	if (cJSON_AddNumberToObject(obj, key, (double)v) == NULL)
		s->oom = true;
}

static void add_array_item(struct ser *s, cJSON *arr, cJSON *item)
{
	if (item == NULL)
		return;
	if (!cJSON_AddItemToArray(arr, item)) {
		cJSON_Delete(item);
		s->oom = true;
	}
}

static void add_params(struct ser *s, cJSON *obj, const char *key,
		       const struct sora_mime_param *params, unsigned int count)
{
	cJSON *arr;

	if (count == 0 || s->oom)
		return;
	arr = cJSON_AddArrayToObject(obj, key);
	if (arr == NULL) {
		s->oom = true;
		return;
	}
	for (unsigned int i = 0; i < count && !s->oom; i++) {
		add_array_item(s, arr, json_string(s, params[i].name));
		add_array_item(s, arr, json_string(s, params[i].value));
	}
}

static cJSON *envelope_json(struct ser *s, const struct sora_mime_envelope *env)
{
	cJSON *obj = cJSON_CreateObject();

	if (obj == NULL) {
		s->oom = true;
		return NULL;
	}
	for (int i = 0; env != NULL && i < SORA_MIME_ENV_COUNT; i++)
		add_str(s, obj, env_keys[i], env->raw[i]);
	return obj;
}

static cJSON *part_json(struct ser *s, const struct sora_mime_part *part)
{
	cJSON *obj = cJSON_CreateObject();

	if (obj == NULL) {
		s->oom = true;
		return NULL;
	}
	add_num(s, obj, "o", part->header_offset);
	add_num(s, obj, "hs", part->header_size);
	add_num(s, obj, "bs", part->body_size);
	if (part->header_vsize != part->header_size)
		add_num(s, obj, "hv", part->header_vsize);
	if (part->body_vsize != part->body_size)
		add_num(s, obj, "bv", part->body_vsize);
	add_num(s, obj, "l", part->body_lines);
	add_num(s, obj, "f", part->flags);
	add_str(s, obj, "t", part->type);
	add_str(s, obj, "st", part->subtype);
	add_params(s, obj, "p", part->params, part->param_count);
	add_str(s, obj, "id", part->id);
	add_str(s, obj, "desc", part->description);
	add_str(s, obj, "md5", part->md5);
	add_str(s, obj, "loc", part->location);
	add_str(s, obj, "enc", part->encoding);
	add_str(s, obj, "disp", part->disposition);
	add_params(s, obj, "dp", part->disp_params, part->disp_param_count);
	if (part->language_count > 0 && !s->oom) {
		cJSON *arr = cJSON_AddArrayToObject(obj, "lang");

		if (arr == NULL)
			s->oom = true;
		for (unsigned int i = 0; arr != NULL && i < part->language_count && !s->oom; i++)
			add_array_item(s, arr, json_string(s, part->languages[i]));
	}
	if (part->envelope != NULL && !s->oom) {
		cJSON *env = envelope_json(s, part->envelope);

		if (env != NULL && !cJSON_AddItemToObject(obj, "env", env)) {
			cJSON_Delete(env);
			s->oom = true;
		}
	}
	if (s->headers && part->header_count > 0 && !s->oom) {
		cJSON *arr = cJSON_AddArrayToObject(obj, "h");

		if (arr == NULL)
			s->oom = true;
		for (unsigned int i = 0; arr != NULL && i < part->header_count && !s->oom; i++) {
			add_array_item(s, arr, json_string(s, part->headers[i].name));
			add_array_item(s, arr, json_string(s, part->headers[i].value));
		}
	}
	if (part->children != NULL && !s->oom) {
		cJSON *arr = cJSON_AddArrayToObject(obj, "c");

		if (arr == NULL)
			s->oom = true;
		for (const struct sora_mime_part *c = part->children; arr != NULL && c != NULL && !s->oom;
		     c = c->next)
			add_array_item(s, arr, part_json(s, c));
	}
	return obj;
}

static int print_json(cJSON *root, struct sora_buf *out, const char **error_r)
{
	char *text = cJSON_PrintUnformatted(root);
	int ret = 0;

	if (text == NULL || sora_buf_append_str(out, text) < 0) {
		*error_r = "out of memory while serializing the message structure";
		ret = -1;
	}
	free(text);
	return ret;
}

int sora_mime_json_serialize(const struct sora_mime_message *msg, unsigned int flags,
			     struct sora_buf *out, const char **error_r)
{
	struct ser s = { .headers = (flags & SORA_MIME_JSON_HEADERS) != 0 };
	cJSON *root = cJSON_CreateObject();
	int ret = -1;

	if (root == NULL)
		goto out;
	if (cJSON_AddNumberToObject(root, "v", SORA_MIME_JSON_VERSION) == NULL ||
	    cJSON_AddNumberToObject(root, "size", (double)msg->size) == NULL ||
	    cJSON_AddNumberToObject(root, "vsize", (double)msg->vsize) == NULL)
		goto out;
	add_num(&s, root, "flags", msg->flags);
	if (!s.oom) {
		cJSON *part = part_json(&s, msg->root);

		if (part != NULL && !cJSON_AddItemToObject(root, "root", part)) {
			cJSON_Delete(part);
			s.oom = true;
		}
	}
	if (s.oom)
		goto out;
	ret = print_json(root, out, error_r);
	cJSON_Delete(root);
	return ret;
out:
	cJSON_Delete(root);
	*error_r = "out of memory while serializing the message structure";
	return -1;
}

int sora_mime_json_envelope(const struct sora_mime_message *msg, struct sora_buf *out,
			    const char **error_r)
{
	struct ser s = { 0 };
	cJSON *env = envelope_json(&s, msg->root->envelope);
	int ret;

	if (env == NULL || s.oom) {
		cJSON_Delete(env);
		*error_r = "out of memory while serializing the envelope";
		return -1;
	}
	ret = print_json(env, out, error_r);
	cJSON_Delete(env);
	return ret;
}

/* ---- reading ---- */

struct deser {
	struct sora_mime_arena *arena;
	unsigned int part_count;
	const char *error;
};

static int fail(struct deser *d, const char *error)
{
	if (d->error == NULL)
		d->error = error;
	return -1;
}

static int get_u64(struct deser *d, const cJSON *obj, const char *key, uint64_t *v_r)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
	double v;

	*v_r = 0;
	if (item == NULL)
		return 0;
	if (!cJSON_IsNumber(item))
		return fail(d, "a number member is not a number");
	v = item->valuedouble;
	if (!(v >= 0 && v <= JSON_MAX_INT) || floor(v) != v)
		return fail(d, "a number member is out of range");
	*v_r = (uint64_t)v;
	return 0;
}

static int item_string(struct deser *d, const cJSON *item, struct sora_str *out)
{
	if (cJSON_IsString(item) && item->valuestring != NULL) {
		if (mime_arena_strdup(d->arena, item->valuestring, strlen(item->valuestring), out) < 0)
			return fail(d, "out of memory");
		return 0;
	}
	if (cJSON_IsObject(item)) {
		const cJSON *b = cJSON_GetObjectItemCaseSensitive(item, "b64");
		struct sora_buf raw;
		int ret;

		if (!cJSON_IsString(b) || b->valuestring == NULL)
			return fail(d, "a string member has a bad encoding");
		sora_buf_init(&raw, 0);
		ret = mime_base64_decode(b->valuestring, strlen(b->valuestring), &raw);
		if (ret == 0)
			ret = mime_arena_strdup(d->arena, raw.data, raw.len, out);
		sora_buf_free(&raw);
		return ret < 0 ? fail(d, "out of memory") : 0;
	}
	return fail(d, "a string member is not a string");
}

static int get_str(struct deser *d, const cJSON *obj, const char *key, struct sora_str *out)
{
	const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);

	*out = SORA_STR_NULL;
	if (item == NULL)
		return 0;
	return item_string(d, item, out);
}

/* A flat [name, value, ...] array into parameters or header fields. */
static int get_pairs(struct deser *d, const cJSON *obj, const char *key,
		     struct sora_str **strs_r, unsigned int *pairs_r)
{
	const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key), *item;
	struct sora_str *strs;
	int n, i = 0;

	*strs_r = NULL;
	*pairs_r = 0;
	if (arr == NULL)
		return 0;
	if (!cJSON_IsArray(arr) || (n = cJSON_GetArraySize(arr)) <= 0 || n % 2 != 0)
		return fail(d, "a pair list is malformed");
	strs = mime_arena_alloc(d->arena, sizeof(*strs) * (size_t)n);
	if (strs == NULL)
		return fail(d, "out of memory");
	cJSON_ArrayForEach(item, arr) {
		if (item_string(d, item, &strs[i++]) < 0)
			return -1;
	}
	*strs_r = strs;
	*pairs_r = (unsigned int)n / 2;
	return 0;
}

static int get_params(struct deser *d, const cJSON *obj, const char *key,
		      struct sora_mime_param **params_r, unsigned int *count_r)
{
	struct sora_str *strs;
	unsigned int pairs;
	struct sora_mime_param *params;

	*params_r = NULL;
	*count_r = 0;
	if (get_pairs(d, obj, key, &strs, &pairs) < 0 || pairs == 0)
		return d->error != NULL ? -1 : 0;
	params = mime_arena_alloc(d->arena, sizeof(*params) * pairs);
	if (params == NULL)
		return fail(d, "out of memory");
	for (unsigned int i = 0; i < pairs; i++) {
		params[i].name = strs[2 * i];
		params[i].value = strs[2 * i + 1];
	}
	*params_r = params;
	*count_r = pairs;
	return 0;
}

static int envelope_from_json(struct deser *d, const cJSON *obj, struct sora_mime_envelope **env_r)
{
	struct sora_mime_envelope *env;

	if (!cJSON_IsObject(obj))
		return fail(d, "the envelope is not an object");
	env = mime_arena_alloc(d->arena, sizeof(*env));
	if (env == NULL)
		return fail(d, "out of memory");
	for (int i = 0; i < SORA_MIME_ENV_COUNT; i++) {
		if (get_str(d, obj, env_keys[i], &env->raw[i]) < 0)
			return -1;
	}
	if (mime_envelope_parse_addresses(d->arena, env) < 0)
		return fail(d, "out of memory");
	*env_r = env;
	return 0;
}

/* Reads a part that must lie within [start, end) of the message. */
static int part_from_json(struct deser *d, const cJSON *obj, struct sora_mime_part *parent,
			  uint64_t start, uint64_t end, struct sora_mime_part **part_r)
{
	struct sora_mime_part *part;
	const cJSON *item, *children;
	uint64_t flags, hv, bv, body_start, body_end, next;
	struct sora_str *strs;
	unsigned int pairs;

	if (!cJSON_IsObject(obj))
		return fail(d, "a part is not an object");
	part = mime_arena_alloc(d->arena, sizeof(*part));
	if (part == NULL)
		return fail(d, "out of memory");
	part->parent = parent;
	part->depth = parent != NULL ? parent->depth + 1 : 0;
	d->part_count++;

	if (get_u64(d, obj, "o", &part->header_offset) < 0 ||
	    get_u64(d, obj, "hs", &part->header_size) < 0 ||
	    get_u64(d, obj, "bs", &part->body_size) < 0 ||
	    get_u64(d, obj, "hv", &hv) < 0 || get_u64(d, obj, "bv", &bv) < 0 ||
	    get_u64(d, obj, "l", &part->body_lines) < 0 || get_u64(d, obj, "f", &flags) < 0)
		return -1;
	part->header_vsize = cJSON_GetObjectItemCaseSensitive(obj, "hv") != NULL ? hv : part->header_size;
	part->body_vsize = cJSON_GetObjectItemCaseSensitive(obj, "bv") != NULL ? bv : part->body_size;
	if ((flags & ~(uint64_t)known_part_flags) != 0 ||
	    (flags & (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE)) ==
		    (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE))
		return fail(d, "a part has invalid flags");
	part->flags = (unsigned int)flags;
	body_start = part->header_offset + part->header_size;
	body_end = body_start + part->body_size;
	if (part->header_offset < start || body_start > end || body_end > end ||
	    body_start < part->header_offset || body_end < body_start)
		return fail(d, "a part lies outside its parent");
	if (part->header_vsize < part->header_size || part->body_vsize < part->body_size ||
	    part->body_lines > part->body_size)
		return fail(d, "a part has inconsistent sizes");

	if (get_str(d, obj, "t", &part->type) < 0 || get_str(d, obj, "st", &part->subtype) < 0 ||
	    get_params(d, obj, "p", &part->params, &part->param_count) < 0 ||
	    get_str(d, obj, "id", &part->id) < 0 || get_str(d, obj, "desc", &part->description) < 0 ||
	    get_str(d, obj, "md5", &part->md5) < 0 || get_str(d, obj, "loc", &part->location) < 0 ||
	    get_str(d, obj, "enc", &part->encoding) < 0 ||
	    get_str(d, obj, "disp", &part->disposition) < 0 ||
	    get_params(d, obj, "dp", &part->disp_params, &part->disp_param_count) < 0)
		return -1;
	item = cJSON_GetObjectItemCaseSensitive(obj, "lang");
	if (item != NULL) {
		const cJSON *tag;
		int n = cJSON_GetArraySize(item), i = 0;

		if (!cJSON_IsArray(item) || n <= 0)
			return fail(d, "the language list is malformed");
		part->languages = mime_arena_alloc(d->arena, sizeof(*part->languages) * (size_t)n);
		if (part->languages == NULL)
			return fail(d, "out of memory");
		cJSON_ArrayForEach(tag, item) {
			if (item_string(d, tag, &part->languages[i++]) < 0)
				return -1;
		}
		part->language_count = (unsigned int)n;
	}
	item = cJSON_GetObjectItemCaseSensitive(obj, "env");
	if (item != NULL) {
		if (parent != NULL && (parent->flags & SORA_MIME_PART_MESSAGE) == 0)
			return fail(d, "an envelope on a part that is no message");
		if (envelope_from_json(d, item, &part->envelope) < 0)
			return -1;
	}
	if (get_pairs(d, obj, "h", &strs, &pairs) < 0)
		return -1;
	if (pairs > 0) {
		part->headers = mime_arena_alloc(d->arena, sizeof(*part->headers) * pairs);
		if (part->headers == NULL)
			return fail(d, "out of memory");
		for (unsigned int i = 0; i < pairs; i++) {
			part->headers[i].name = strs[2 * i];
			part->headers[i].value = strs[2 * i + 1];
		}
		part->header_count = pairs;
	}

	children = cJSON_GetObjectItemCaseSensitive(obj, "c");
	if (children != NULL) {
		struct sora_mime_part *last = NULL;
		const cJSON *c;

		if (!cJSON_IsArray(children) || cJSON_GetArraySize(children) <= 0)
			return fail(d, "the child list is malformed");
		if ((part->flags & (SORA_MIME_PART_MULTIPART | SORA_MIME_PART_MESSAGE)) == 0 ||
		    ((part->flags & SORA_MIME_PART_MESSAGE) != 0 && cJSON_GetArraySize(children) != 1))
			return fail(d, "children on a part that cannot have them");
		next = body_start;
		cJSON_ArrayForEach(c, children) {
			struct sora_mime_part *child;

			if (part_from_json(d, c, part, next, body_end, &child) < 0)
				return -1;
			if (last == NULL)
				part->children = child;
			else
				last->next = child;
			last = child;
			part->child_count++;
			next = child->header_offset + child->header_size + child->body_size;
		}
	}
	*part_r = part;
	return 0;
}

int sora_mime_json_deserialize(const void *data, size_t len, struct sora_mime_message **msg_r,
			       const char **error_r)
{
	struct sora_mime_message *msg = NULL;
	struct deser d = { 0 };
	cJSON *root = NULL;
	uint64_t version, size, vsize, flags;

	*msg_r = NULL;
	root = cJSON_ParseWithLength(data, len);
	if (root == NULL || !cJSON_IsObject(root)) {
		fail(&d, "the message structure is not a JSON object");
		goto out;
	}
	if (get_u64(&d, root, "v", &version) < 0 || get_u64(&d, root, "size", &size) < 0 ||
	    get_u64(&d, root, "vsize", &vsize) < 0 || get_u64(&d, root, "flags", &flags) < 0)
		goto out;
	if (version != SORA_MIME_JSON_VERSION) {
		fail(&d, "unsupported message structure version");
		goto out;
	}
	if (vsize < size ||
	    (flags & ~(uint64_t)(SORA_MIME_MSG_LIMITED | SORA_MIME_MSG_TRUNCATED)) != 0) {
		fail(&d, "the message sizes or flags are invalid");
		goto out;
	}
	msg = calloc(1, sizeof(*msg));
	if (msg == NULL || (msg->arena = sora_mime_arena_new()) == NULL) {
		fail(&d, "out of memory");
		goto out;
	}
	msg->size = size;
	msg->vsize = vsize;
	msg->flags = (unsigned int)flags;
	d.arena = msg->arena;
	if (part_from_json(&d, cJSON_GetObjectItemCaseSensitive(root, "root"), NULL, 0, size,
			   &msg->root) < 0)
		goto out;
	if (msg->root->header_offset != 0 ||
	    msg->root->header_size + msg->root->body_size != size) {
		fail(&d, "the root part does not cover the message");
		goto out;
	}
	msg->part_count = d.part_count;
	*msg_r = msg;
	msg = NULL;
out:
	cJSON_Delete(root);
	sora_mime_message_free(&msg);
	if (*msg_r == NULL)
		*error_r = d.error != NULL ? d.error : "invalid message structure";
	return *msg_r != NULL ? 0 : -1;
}

int sora_mime_json_envelope_parse(const void *data, size_t len, struct sora_mime_arena *arena,
				  struct sora_mime_envelope **env_r, const char **error_r)
{
	struct deser d = { .arena = arena };
	cJSON *root = cJSON_ParseWithLength(data, len);
	int ret = -1;

	*env_r = NULL;
	if (root == NULL)
		fail(&d, "the envelope is not JSON");
	else
		ret = envelope_from_json(&d, root, env_r);
	cJSON_Delete(root);
	if (ret < 0)
		*error_r = d.error != NULL ? d.error : "invalid envelope";
	return ret;
}
