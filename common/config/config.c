/* Sora configuration loader (see config.h; the file format is described in
 * config-toml.h).
 *
 * Loading runs in four steps:
 *   1. sora_toml_prepare() checks the text and turns it into INI lines plus
 *      a list of table headers.
 *   2. Every table header is resolved to the struct it fills (a fixed
 *      table such as [database], a server, a server's sub-table, a client
 *      filter, a read endpoint), creating servers and array entries with
 *      their defaults. This happens before any key is read, so that tables
 *      without keys exist too and every pointer is stable in step 3.
 *   3. inih walks the lines; each "key = value" is looked up in the table's
 *      key list (config-schema.c: name, type, field offset, default, limits)
 *      and decoded into its field, with the checks that need only the
 *      value itself (type, range, duration, CIDR, regex, address syntax).
 *   4. Checks that involve several keys or the file system (TLS files,
 *      required keys, type-dependent defaults) run over the finished
 *      config.
 * The key lists drive defaults and freeing as well, so adding a key means
 * adding one line to one list. */
#include "common/config/config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <regex.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/config/config-schema.h"
#include "common/config/config-toml.h"
#include "common/core/log.h"
#include "common/core/str.h"
#include "common/core/units.h"

/* ---- defaults and freeing, driven by the key lists --------------------- */

static void *field_at(void *base, size_t offset)
{
	return (char *)base + offset;
}

static void free_string(char **s)
{
	/* Any string may be a password or key; wiping all of them is
	 * simpler than keeping a list and costs nothing at this scale. */
	if (*s != NULL) {
		sodium_memzero(*s, strlen(*s));
		free(*s);
		*s = NULL;
	}
}

static int apply_defaults(const struct sora_config_key *keys, void *base)
{
	for (const struct sora_config_key *k = keys; k->name != NULL; k++) {
		void *f = field_at(base, k->offset);

		switch (k->type) {
		case KT_STRING:
			if (k->def_string != NULL) {
				char *copy = strdup(k->def_string);
				if (copy == NULL)
					return -1;
				free_string(f);
				*(char **)f = copy;
			}
			break;
		case KT_BOOL:
			*(bool *)f = k->def_int != 0;
			break;
		case KT_INT:
			*(int *)f = (int)k->def_int;
			break;
		case KT_INT64:
		case KT_DURATION:
			*(int64_t *)f = k->def_int;
			break;
		case KT_SIZE:
			*(uint64_t *)f = (uint64_t)k->def_int;
			break;
		case KT_DOUBLE:
			*(double *)f = k->def_double;
			break;
		case KT_STRINGS:
		case KT_CIDRS:
		case KT_SERVER_TYPE:
			/* Empty lists; the type is settled in finalize_server(). */
			break;
		}
	}
	return 0;
}

static void free_fields(const struct sora_config_key *keys, void *base)
{
	for (const struct sora_config_key *k = keys; k->name != NULL; k++) {
		void *f = field_at(base, k->offset);

		switch (k->type) {
		case KT_STRING:
			free_string(f);
			break;
		case KT_STRINGS:
			sora_toml_strings_free(*(char ***)f);
			*(char ***)f = NULL;
			*(size_t *)field_at(base, k->count_offset) = 0;
			break;
		case KT_CIDRS:
			sora_cidr_list_free(f);
			break;
		default:
			break;
		}
	}
}

/* The one table of a scope (filters, endpoints) among the schema's lists. */
static const struct sora_config_table *scope_table(enum sora_config_scope scope)
{
	for (size_t i = 0; i < sora_config_server_subtable_count; i++) {
		if (sora_config_server_subtables[i].scope == scope)
			return &sora_config_server_subtables[i];
	}
	for (size_t i = 0; i < sora_config_fixed_table_count; i++) {
		if (sora_config_fixed_tables[i].scope == scope)
			return &sora_config_fixed_tables[i];
	}
	return NULL;
}

/* A server's own keys and those of the sub-tables inside its struct. */
static int server_defaults(struct sora_server_config *s)
{
	if (apply_defaults(sora_config_server_table.keys, s) < 0)
		return -1;
	for (size_t i = 0; i < sora_config_server_subtable_count; i++) {
		const struct sora_config_table *sub = &sora_config_server_subtables[i];
		if (sub->scope == SCOPE_SERVER && apply_defaults(sub->keys, field_at(s, sub->offset)) < 0)
			return -1;
	}
	return 0;
}

static void free_server(struct sora_server_config *s)
{
	const struct sora_config_table *filter = scope_table(SCOPE_FILTER);

	free_fields(sora_config_server_table.keys, s);
	for (size_t i = 0; i < sora_config_server_subtable_count; i++) {
		const struct sora_config_table *sub = &sora_config_server_subtables[i];
		if (sub->scope == SCOPE_SERVER)
			free_fields(sub->keys, field_at(s, sub->offset));
	}
	for (size_t i = 0; i < s->client_filters_count; i++)
		free_fields(filter->keys, &s->client_filters[i]);
	free(s->client_filters);
	free(s->name);
	free(s->defined_at);
}

void sora_config_free(struct sora_config **configp)
{
	struct sora_config *c = *configp;
	const struct sora_config_table *endpoint = scope_table(SCOPE_ENDPOINT);

	if (c == NULL)
		return;
	*configp = NULL;
	free_fields(sora_config_root_table.keys, c);
	for (size_t i = 0; i < sora_config_fixed_table_count; i++) {
		const struct sora_config_table *t = &sora_config_fixed_tables[i];
		if (t->scope == SCOPE_CONFIG)
			free_fields(t->keys, field_at(c, t->offset));
	}
	for (size_t i = 0; i < c->database.read_endpoints_count; i++)
		free_fields(endpoint->keys, &c->database.read_endpoints[i]);
	free(c->database.read_endpoints);
	for (size_t i = 0; i < c->servers_count; i++)
		free_server(&c->servers[i]);
	free(c->servers);
	free(c->path);
	free(c->unavailable);
	free(c);
}

static struct sora_config *config_new(void)
{
	struct sora_config *c = calloc(1, sizeof(*c));
	const char *error;

	if (c == NULL)
		return NULL;
	if (apply_defaults(sora_config_root_table.keys, c) < 0)
		goto fail;
	for (size_t i = 0; i < sora_config_fixed_table_count; i++) {
		const struct sora_config_table *t = &sora_config_fixed_tables[i];
		if (t->scope == SCOPE_CONFIG && apply_defaults(t->keys, field_at(c, t->offset)) < 0)
			goto fail;
	}
	/* Setting trusted_networks replaces this list rather than adding to it. */
	if (sora_cidr_list_add(&c->trusted_networks, "127.0.0.0/8", &error) < 0 ||
	    sora_cidr_list_add(&c->trusted_networks, "::1/128", &error) < 0)
		goto fail;
	return c;
fail:
	sora_config_free(&c);
	return NULL;
}

/* ---- the loader's state ----------------------------------------------- */

#define NONE ((size_t)-1)

/* One table header of the file (or the top level) and what it fills. */
struct table_ref {
	const struct sora_config_table *schema;  /* NULL: unknown table, ignored */
	const char *name;          /* as written; borrowed from the doc */
	bool is_array;
	unsigned line;             /* of the header; 0 for the top level */
	size_t server;             /* SCOPE_SERVER and SCOPE_FILTER */
	size_t item;               /* SCOPE_FILTER and SCOPE_ENDPOINT */
	unsigned *key_lines;       /* per key of the schema: line set on, or 0 */
};

/* What the loader knows about a server beyond its struct. */
struct server_meta {
	unsigned line;        /* where it was first mentioned */
	size_t main_table;    /* its [servers.NAME] or [[servers]] table, or NONE */
	bool anonymous;       /* a [[servers]] entry, named "type#N" at the end */
};

struct loader {
	struct sora_config *config;
	const char *name;               /* file name used in messages */
	struct sora_toml_doc doc;
	struct table_ref *tables;       /* [0] the top level, [i + 1] doc.tables[i] */
	size_t table_count;
	struct server_meta *servers;    /* parallel to config->servers */
	size_t last_anonymous;          /* most recent [[servers]] entry, or NONE */

	size_t next_line;               /* next doc line for the INI reader */
	unsigned line;                  /* the line inih is working on */
	size_t pending_table;           /* a multi-line array being read... */
	unsigned pending_line;          /* ...which started on this line */
	char pending_key[SORA_TOML_MAX_LINE + 1];

	bool failed;
	char *err;
	size_t errsize;
};

/* Records the first error; later ones are consequences and are dropped. */
static void fail_line(struct loader *l, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void fail_key(struct loader *l, unsigned line, const char *where, const char *key,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail_line(struct loader *l, unsigned line, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->failed)
		return;
	l->failed = true;
	if (l->errsize == 0)
		return;
	n = snprintf(l->err, l->errsize, "%s:%u: ", l->name, line);
	if (n < 0 || (size_t)n >= l->errsize)
		return;
	va_start(ap, fmt);
	vsnprintf(l->err + n, l->errsize - (size_t)n, fmt, ap);
	va_end(ap);
}

/* "FILE:LINE: key 'KEY' in [TABLE]: MESSAGE" */
static void fail_key(struct loader *l, unsigned line, const char *where, const char *key,
		     const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fail_line(l, line, "key '%s' %s: %s", key, where, msg);
}

static void table_label(const struct table_ref *t, char *buf, size_t size)
{
	if (t->line == 0)
		snprintf(buf, size, "at the top level");
	else if (t->is_array)
		snprintf(buf, size, "in [[%s]]", t->name);
	else
		snprintf(buf, size, "in [%s]", t->name);
}

static void server_label(const struct loader *l, size_t si, char *buf, size_t size)
{
	const struct server_meta *m = &l->servers[si];

	if (m->main_table != NONE)
		table_label(&l->tables[m->main_table], buf, size);
	else
		snprintf(buf, size, "in [servers.%s]", l->config->servers[si].name);
}

/* ---- step 2: tables ----------------------------------------------------- */

static int add_server(struct loader *l, const char *name, unsigned line, size_t *index_r)
{
	struct sora_config *c = l->config;
	struct sora_server_config *servers, *s;
	struct server_meta *meta;
	size_t n = c->servers_count;

	servers = reallocarray(c->servers, n + 1, sizeof(*servers));
	if (servers == NULL)
		return -1;
	c->servers = servers;
	meta = reallocarray(l->servers, n + 1, sizeof(*meta));
	if (meta == NULL)
		return -1;
	l->servers = meta;

	s = &servers[n];
	memset(s, 0, sizeof(*s));
	meta[n] = (struct server_meta){ .line = line, .main_table = NONE };
	/* Counted before the defaults so that sora_config_free() releases a
	 * half-initialised server too. */
	c->servers_count++;
	if (name != NULL && (s->name = strdup(name)) == NULL)
		return -1;
	if (server_defaults(s) < 0)
		return -1;
	*index_r = n;
	return 0;
}

static int find_or_add_named_server(struct loader *l, const char *name, size_t name_len,
				    unsigned line, size_t *index_r)
{
	char copy[SORA_TOML_MAX_LINE + 1];

	for (size_t i = 0; i < l->config->servers_count; i++) {
		const char *n = l->config->servers[i].name;
		if (!l->servers[i].anonymous && strlen(n) == name_len &&
		    memcmp(n, name, name_len) == 0) {
			*index_r = i;
			return 0;
		}
	}
	memcpy(copy, name, name_len);
	copy[name_len] = '\0';
	return add_server(l, copy, line, index_r);
}

static int add_filter(struct loader *l, size_t si, size_t *index_r)
{
	struct sora_server_config *s = &l->config->servers[si];
	struct sora_client_filter *filters;

	filters = reallocarray(s->client_filters, s->client_filters_count + 1, sizeof(*filters));
	if (filters == NULL)
		return -1;
	s->client_filters = filters;
	memset(&filters[s->client_filters_count], 0, sizeof(*filters));
	*index_r = s->client_filters_count++;
	return apply_defaults(scope_table(SCOPE_FILTER)->keys, &filters[*index_r]);
}

static int add_endpoint(struct loader *l, size_t *index_r)
{
	struct sora_database_config *db = &l->config->database;
	struct sora_db_endpoint *eps;

	eps = reallocarray(db->read_endpoints, db->read_endpoints_count + 1, sizeof(*eps));
	if (eps == NULL)
		return -1;
	db->read_endpoints = eps;
	memset(&eps[db->read_endpoints_count], 0, sizeof(*eps));
	*index_r = db->read_endpoints_count++;
	return apply_defaults(scope_table(SCOPE_ENDPOINT)->keys, &eps[*index_r]);
}

/* A plain (not array) table may appear once per struct it fills. */
static bool check_not_repeated(struct loader *l, size_t ti)
{
	const struct table_ref *t = &l->tables[ti];

	for (size_t i = 1; i < ti; i++) {
		const struct table_ref *o = &l->tables[i];
		if (o->schema == t->schema && o->server == t->server) {
			fail_line(l, t->line, "table [%s] is defined twice (first on line %u)",
				  t->name, o->line);
			return false;
		}
	}
	return true;
}

static bool check_brackets(struct loader *l, const struct table_ref *t,
			   const struct sora_config_table *schema)
{
	if (t->is_array == schema->is_array)
		return true;
	fail_line(l, t->line, "%s must be written %s%s%s", t->name,
		  schema->is_array ? "[[" : "[", t->name, schema->is_array ? "]]" : "]");
	return false;
}

/* Points table ti at sub-table `sub` of server si. */
static void attach_subtable(struct loader *l, size_t ti, size_t si,
			    const struct sora_config_table *sub)
{
	struct table_ref *t = &l->tables[ti];

	if (!check_brackets(l, t, sub))
		return;
	t->schema = sub;
	t->server = si;
	if (sub->scope == SCOPE_FILTER) {
		if (add_filter(l, si, &t->item) < 0)
			fail_line(l, t->line, "out of memory");
	} else {
		check_not_repeated(l, ti);
	}
}

static const struct sora_config_table *find_subtable(const char *name, size_t len)
{
	for (size_t i = 0; i < sora_config_server_subtable_count; i++) {
		const struct sora_config_table *sub = &sora_config_server_subtables[i];
		if (strlen(sub->name) == len && memcmp(sub->name, name, len) == 0)
			return sub;
	}
	return NULL;
}

static void warn_unknown_table(struct loader *l, const struct table_ref *t)
{
	l->config->warnings++;
	sora_warn(NULL, "%s:%u: unknown table [%s%s%s] (its keys are ignored)", l->name, t->line,
		  t->is_array ? "[" : "", t->name, t->is_array ? "]" : "");
}

/* [[servers]], [servers.NAME], [servers.NAME.sub], and after a [[servers]]
 * entry also [servers.sub] / [[servers.client_filters]], which TOML
 * attaches to the most recent entry. `rest` follows "servers." (or is NULL
 * for "servers" itself). */
static void resolve_server_table(struct loader *l, size_t ti, const char *rest)
{
	struct table_ref *t = &l->tables[ti];
	const struct sora_config_table *sub;
	const char *dot;
	size_t si;

	if (rest == NULL) {
		if (!t->is_array) {
			fail_line(l, t->line, "[servers] needs a name: write [servers.NAME] "
				  "or [[servers]] with type = \"...\"");
			return;
		}
		if (add_server(l, NULL, t->line, &si) < 0) {
			fail_line(l, t->line, "out of memory");
			return;
		}
		l->servers[si].anonymous = true;
		l->servers[si].main_table = ti;
		l->last_anonymous = si;
		t->schema = &sora_config_server_table;
		t->server = si;
		return;
	}

	dot = strchr(rest, '.');
	if (dot == NULL) {
		sub = find_subtable(rest, strlen(rest));
		if (sub != NULL && l->last_anonymous != NONE) {
			attach_subtable(l, ti, l->last_anonymous, sub);
			return;
		}
		if (sub != NULL && sub->is_array) {
			fail_line(l, t->line, "[[servers.%s]] must follow a [[servers]] entry "
				  "(or name its server: [[servers.NAME.%s]])", rest, rest);
			return;
		}
		if (t->is_array) {
			fail_line(l, t->line, "a named server is written [servers.%s], "
				  "not [[servers.%s]]", rest, rest);
			return;
		}
		if (find_or_add_named_server(l, rest, strlen(rest), t->line, &si) < 0) {
			fail_line(l, t->line, "out of memory");
			return;
		}
		if (l->servers[si].main_table != NONE) {
			fail_line(l, t->line, "duplicate server name '%s' (first defined on line %u)",
				  rest, l->tables[l->servers[si].main_table].line);
			return;
		}
		l->servers[si].main_table = ti;
		t->schema = &sora_config_server_table;
		t->server = si;
		return;
	}

	sub = strchr(dot + 1, '.') == NULL ? find_subtable(dot + 1, strlen(dot + 1)) : NULL;
	if (sub == NULL) {
		warn_unknown_table(l, t);
		return;
	}
	if (find_or_add_named_server(l, rest, (size_t)(dot - rest), t->line, &si) < 0) {
		fail_line(l, t->line, "out of memory");
		return;
	}
	attach_subtable(l, ti, si, sub);
}

static void resolve_table(struct loader *l, size_t ti)
{
	struct table_ref *t = &l->tables[ti];

	if (strncmp(t->name, "servers", 7) == 0 && (t->name[7] == '\0' || t->name[7] == '.')) {
		resolve_server_table(l, ti, t->name[7] == '.' ? t->name + 8 : NULL);
		return;
	}
	for (size_t i = 0; i < sora_config_fixed_table_count; i++) {
		const struct sora_config_table *schema = &sora_config_fixed_tables[i];

		if (strcmp(t->name, schema->name) != 0)
			continue;
		if (!check_brackets(l, t, schema))
			return;
		t->schema = schema;
		if (schema->scope == SCOPE_ENDPOINT) {
			if (add_endpoint(l, &t->item) < 0)
				fail_line(l, t->line, "out of memory");
		} else {
			check_not_repeated(l, ti);
		}
		return;
	}
	warn_unknown_table(l, t);
}

static size_t key_count(const struct sora_config_key *keys)
{
	size_t n = 0;

	while (keys[n].name != NULL)
		n++;
	return n;
}

static int resolve_tables(struct loader *l)
{
	l->table_count = l->doc.table_count + 1;
	l->tables = calloc(l->table_count, sizeof(*l->tables));
	if (l->tables == NULL)
		goto nomem;
	l->tables[0] = (struct table_ref){ .schema = &sora_config_root_table, .name = "" };
	for (size_t i = 0; i < l->doc.table_count; i++) {
		l->tables[i + 1] = (struct table_ref){
			.name = l->doc.tables[i].name,
			.is_array = l->doc.tables[i].is_array,
			.line = l->doc.tables[i].line,
			.server = NONE,
			.item = NONE,
		};
	}
	for (size_t i = 0; i < l->table_count && !l->failed; i++) {
		if (i > 0)
			resolve_table(l, i);
		if (l->tables[i].schema != NULL) {
			size_t n = key_count(l->tables[i].schema->keys);
			l->tables[i].key_lines = calloc(n > 0 ? n : 1, sizeof(unsigned));
			if (l->tables[i].key_lines == NULL)
				goto nomem;
		}
	}
	return l->failed ? -1 : 0;
nomem:
	fail_line(l, 0, "out of memory");
	return -1;
}

static void *table_base(struct loader *l, const struct table_ref *t)
{
	struct sora_config *c = l->config;

	switch (t->schema->scope) {
	case SCOPE_CONFIG:
		return field_at(c, t->schema->offset);
	case SCOPE_SERVER:
		return field_at(&c->servers[t->server], t->schema->offset);
	case SCOPE_FILTER:
		return &c->servers[t->server].client_filters[t->item];
	case SCOPE_ENDPOINT:
		return &c->database.read_endpoints[t->item];
	}
	return NULL;
}

/* ---- step 3: values ----------------------------------------------------- */

static const char *check_hex_key(const char *s)
{
	size_t n = 0;

	while (sora_hex_value((unsigned char)s[n]) >= 0)
		n++;
	if (n != 64 || s[n] != '\0')
		return "must be 64 hex characters (a 32-byte key, e.g. from `openssl rand -hex 32`)";
	return NULL;
}

static const char *check_acl_rights(const char *s)
{
	for (; *s != '\0'; s++) {
		if (strchr("lrswipkxtea", *s) == NULL)
			return "unknown ACL right (the rights are the letters lrswipkxtea)";
	}
	return NULL;
}

/* What a client filter's pattern may cost. glibc's regcomp() builds its
 * tree by copying what a repetition applies to: "x{n}" becomes n copies of
 * x, and "x+" becomes "xx*", so both multiply with nesting and stacking.
 * "^t" followed by 150 '+' took 24 GB and two minutes before the OOM
 * killer ended it; "((a{99}){99}){99}" is a million copies. A JA4
 * fingerprint is 36 characters, so no useful pattern comes near these
 * limits. */
#define REGEX_MAX_LEN     256   /* bytes */
#define REGEX_MAX_NODES   1000  /* atoms after glibc's copying, estimated */
#define REGEX_MAX_REPEATS 32    /* '*', '+', '?' and {n,m} operators */
#define REGEX_MAX_DEPTH   16    /* nested parentheses */

/* The index just past the bracket expression that starts at re[i] ('['),
 * or 0 if it is not closed (regcomp() then reports the error). A ']'
 * right after "[" or "[^" is a literal, and "[:alpha:]", "[=a=]",
 * "[.a.]" inside are skipped whole. */
static size_t skip_bracket(const char *re, size_t i)
{
	i++;
	if (re[i] == '^')
		i++;
	if (re[i] == ']')
		i++;
	for (; re[i] != '\0'; i++) {
		if (re[i] == ']')
			return i + 1;
		if (re[i] == '[' && (re[i + 1] == ':' || re[i + 1] == '=' || re[i + 1] == '.')) {
			char kind = re[i + 1];
			const char *close;

			for (close = re + i + 2; *close != '\0'; close++) {
				if (close[0] == kind && close[1] == ']')
					break;
			}
			if (*close == '\0')
				return 0;
			i = (size_t)(close - re) + 1;
		}
	}
	return 0;
}

/* Parses "{n}", "{n,}" or "{n,m}" at re[i]. Returns the index after it and
 * the number of copies regcomp() makes, or 0 if it is not an interval
 * (then '{' is left to regcomp()). Numbers are capped so nothing overflows;
 * RE_DUP_MAX is far below the cap. */
static size_t parse_interval(const char *re, size_t i, uint64_t *copies_r)
{
	uint64_t lo = 0, hi = 0;
	bool comma = false, digits = false;

	for (i++; re[i] != '}'; i++) {
		if (re[i] >= '0' && re[i] <= '9') {
			uint64_t *n = comma ? &hi : &lo;
			*n = *n < 1000000 ? *n * 10 + (uint64_t)(re[i] - '0') : *n;
			digits = true;
		} else if (re[i] == ',' && !comma) {
			comma = true;
		} else {
			return 0;
		}
	}
	if (!digits)
		return 0;
	/* "{n,}" is n copies and a star. */
	*copies_r = (hi > lo ? hi : lo) + (comma && hi == 0 ? 1 : 0);
	if (*copies_r == 0)
		*copies_r = 1;
	return i + 1;
}

/* Estimates the size of what regcomp() would build, before it builds it.
 * Returns NULL, or why the pattern is refused. Back-references are refused
 * too: they are the one ERE feature (a glibc extension) whose matching
 * time can grow exponentially, and the fingerprint a pattern is matched
 * against comes from the client. */
static const char *regex_cost_error(const char *re)
{
	/* Per open group: the size before it and its own size so far. */
	uint64_t outer[REGEX_MAX_DEPTH + 1];
	uint64_t size = 0, last = 0;   /* last: size of the atom a quantifier applies to */
	unsigned depth = 0, repeats = 0;
	bool after_quantifier = false;

	if (strlen(re) > REGEX_MAX_LEN)
		return "regular expression too long (at most 256 bytes)";
	for (size_t i = 0; re[i] != '\0'; ) {
		char c = re[i];
		uint64_t copies = 1;
		size_t next = 0;

		if (c == '*' || c == '+' || c == '?' ||
		    (c == '{' && (next = parse_interval(re, i, &copies)) != 0)) {
			if (after_quantifier)
				return "regular expression has a repetition operator right after "
					"another (as in \"a++\"); write one";
			if (++repeats > REGEX_MAX_REPEATS)
				return "regular expression has more than 32 repetition operators";
			if (c == '+')
				copies = 2;   /* "x+" is built as "xx*" */
			i = c == '{' ? next : i + 1;
			size += last * (copies - 1);
			last *= copies;
			after_quantifier = true;
		} else {
			after_quantifier = false;
			if (c == '(') {
				if (depth == REGEX_MAX_DEPTH)
					return "regular expression nests parentheses more than 16 deep";
				outer[depth++] = size;
				size = 0;
				last = 0;
				i++;
			} else if (c == ')' && depth > 0) {
				last = size > 0 ? size : 1;
				size = outer[--depth] + last;
				i++;
			} else if (c == '|') {
				last = 0;
				i++;
			} else if (c == '[') {
				next = skip_bracket(re, i);
				if (next == 0)
					return NULL;   /* unterminated: regcomp() says so */
				last = 1;
				size++;
				i = next;
			} else if (c == '\\' && re[i + 1] != '\0') {
				if (re[i + 1] >= '1' && re[i + 1] <= '9')
					return "back-references (\\1 to \\9) are not allowed in a "
						"client filter";
				last = 1;
				size++;
				i += 2;
			} else {
				last = 1;
				size++;
				i++;
			}
		}
		/* Every open group's copies are counted when it closes, so the
		 * sizes on the stack bound the total from below. */
		uint64_t total = size;
		for (unsigned d = 0; d < depth; d++)
			total += outer[d];
		if (total > REGEX_MAX_NODES || last > REGEX_MAX_NODES)
			return "regular expression too complex (its repetitions expand past "
				"1000 elements)";
	}
	return NULL;
}

static const char *check_regex(const char *re, char *msg, size_t msgsize)
{
	const char *why = regex_cost_error(re);
	regex_t rx;
	int rc;

	if (why != NULL)
		return why;
	rc = regcomp(&rx, re, REG_EXTENDED | REG_NOSUB);
	if (rc != 0) {
		char reason[128];
		regerror(rc, &rx, reason, sizeof(reason));
		snprintf(msg, msgsize, "invalid regular expression: %s", reason);
		return msg;
	}
	regfree(&rx);
	return NULL;
}

static bool is_host_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		c == '.' || c == '-' || c == '_';
}

/* Checks address syntax only: names are resolved when they are used, not
 * while loading (a config check must not depend on DNS). */
static const char *check_address(const char *s, unsigned flags)
{
	const char *port, *colon;
	uint64_t n;

	if (strstr(s, "://") != NULL)
		return "expected host:port, not a URL";
	if (strncmp(s, "unix:", 5) == 0) {
		if (!(flags & (KF_LISTEN | KF_REMOTE)))
			return "a unix socket is not allowed here (expected host:port)";
		if (s[5] != '/')
			return "a unix socket path must be absolute (unix:/path)";
		if (strlen(s + 5) >= 108)
			return "unix socket path too long (at most 107 characters)";
		return NULL;
	}
	if (s[0] == '[') {
		const char *close = strchr(s, ']');
		char v6[64];
		struct in6_addr a6;
		size_t len;

		if (close == NULL || close[1] != ':')
			return "expected [IPv6 address]:port";
		len = (size_t)(close - s - 1);
		if (len >= sizeof(v6))
			return "invalid IPv6 address";
		memcpy(v6, s + 1, len);
		v6[len] = '\0';
		if (inet_pton(AF_INET6, v6, &a6) != 1)
			return "invalid IPv6 address";
		port = close + 2;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL && (flags & KF_HOST))
			colon = s + strlen(s);   /* the port is optional */
		if (colon == NULL)
			return flags & KF_LISTEN ? "expected host:port, :port, [IPv6]:port or unix:/path" :
				"expected host:port";
		if (*colon == '\0' && colon == s)
			return "empty host name";
		if (memchr(s, ':', (size_t)(colon - s)) != NULL)
			return "an IPv6 address must be in brackets, as in [::1]:143";
		if (colon == s && !(flags & KF_LISTEN))
			return "missing host name (expected host:port)";
		for (const char *p = s; p < colon; p++) {
			if (!is_host_char(*p))
				return "invalid character in host name";
		}
		if (*colon == '\0')
			return NULL;
		port = colon + 1;
	}
	if (sora_str_to_u64(sora_str_c(port), 65535, &n) < 0)
		return "invalid port (expected a number from 1 to 65535)";
	/* Port 0 lets the kernel pick, which only a listener can use. */
	if (n == 0 && !(flags & KF_LISTEN))
		return "invalid port 0";
	return NULL;
}

/* Checks on one string value that depend only on the value. Returns NULL,
 * a static message, or msg after writing a message into it. */
static const char *check_string(const struct sora_config_key *k, const char *s,
				char *msg, size_t msgsize)
{
	const char *why;

	if (k->flags & KF_HEX_KEY)
		return check_hex_key(s);
	if (k->flags & KF_REGEX)
		return check_regex(s, msg, msgsize);
	if (k->flags & KF_ACL_RIGHTS)
		return check_acl_rights(s);
	if (k->flags & (KF_LISTEN | KF_REMOTE | KF_HOSTPORT | KF_HOST)) {
		char host[SORA_TOML_MAX_LINE + 1];
		const char *addr = s;

		/* The S3 driver takes "https://host[:port]/" as well (the scheme
		 * then decides TLS; check_storage() refuses a use_ssl that
		 * says otherwise): check what remains as host[:port]. */
		if (k->flags & KF_URL_SCHEME) {
			size_t skip = strncmp(s, "https://", 8) == 0 ? 8 :
				strncmp(s, "http://", 7) == 0 ? 7 : 0;
			size_t len = sora_strlcpy(host, s + skip, sizeof(host));

			while (skip > 0 && len > 0 && host[len - 1] == '/')
				host[--len] = '\0';
			addr = host;
		}
		why = check_address(addr, k->flags);
		if (why == NULL)
			return NULL;
		snprintf(msg, msgsize, "invalid address \"%s\": %s", s, why);
		return msg;
	}
	return NULL;
}

static int type_error(const char *expected, const struct sora_toml_value *v,
		      char *msg, size_t msgsize)
{
	snprintf(msg, msgsize, "expected %s, got %s", expected, sora_toml_kind_name(v->kind));
	return -1;
}

/* The rule for numbers and durations: -1 disables where KF_DISABLE allows
 * it, 0 selects the default where KF_ZERO_DEFAULT says so, anything else
 * must lie within [min, max]. `n` is in the field's unit. */
static int apply_limits(const struct sora_config_key *k, int64_t n, int64_t *out_r,
			char *msg, size_t msgsize)
{
	char a[32], b[32];
	bool duration = k->type == KT_DURATION;

	if (n == -1 && (k->flags & KF_DISABLE)) {
		*out_r = SORA_DISABLED;
		return 0;
	}
	if (n == 0 && (k->flags & KF_ZERO_DEFAULT)) {
		*out_r = k->def_int;
		return 0;
	}
	if (n < 0) {
		snprintf(msg, msgsize, "must not be negative%s",
			 k->flags & KF_DISABLE ? " (-1 disables it)" : "");
		return -1;
	}
	if (n < k->min) {
		if (duration)
			sora_format_duration(k->min, a, sizeof(a));
		else
			snprintf(a, sizeof(a), "%lld", (long long)k->min);
		snprintf(msg, msgsize, "must be at least %s%s", a,
			 k->flags & KF_ZERO_DEFAULT ? " (or 0 for the default)" : "");
		return -1;
	}
	if (n > k->max) {
		snprintf(b, sizeof(b), "%lld", (long long)k->max);
		snprintf(msg, msgsize, "must be at most %s", b);
		return -1;
	}
	*out_r = n;
	return 0;
}

static int store_integer(const struct sora_config_key *k, void *f, const struct sora_toml_value *v,
			 char *msg, size_t msgsize)
{
	int64_t n;

	if (v->kind != SORA_TOML_INTEGER)
		return type_error("an integer", v, msg, msgsize);
	if (apply_limits(k, v->integer, &n, msg, msgsize) < 0)
		return -1;
	if (k->type == KT_INT)
		*(int *)f = (int)n;   /* the limits of every KT_INT key fit an int */
	else
		*(int64_t *)f = n;
	return 0;
}

/* A duration is a string ("15m", "1h30m", "0", "-1") or an integer number
 * of seconds, matching the bare-number rule of sora_parse_duration_ms(). */
static int store_duration(const struct sora_config_key *k, void *f, const struct sora_toml_value *v,
			  char *msg, size_t msgsize)
{
	const char *error;
	int64_t ms;

	if (v->kind == SORA_TOML_STRING) {
		if (sora_parse_duration_ms(v->string, &ms, &error) < 0) {
			snprintf(msg, msgsize, "%s: \"%s\"", error, v->string);
			return -1;
		}
	} else if (v->kind == SORA_TOML_INTEGER) {
		if (v->integer < -1) {
			ms = v->integer;   /* rejected below as negative */
		} else if (v->integer == -1) {
			ms = -1;
		} else if (v->integer > INT64_MAX / 1000) {
			snprintf(msg, msgsize, "duration out of range");
			return -1;
		} else {
			ms = v->integer * 1000;
		}
	} else {
		return type_error("a duration such as \"30s\", \"15m\" or \"720h\"", v, msg, msgsize);
	}
	if (ms == -1 && !(k->flags & KF_DISABLE)) {
		snprintf(msg, msgsize, "-1 (disabled) is not allowed here");
		return -1;
	}
	return apply_limits(k, ms, f, msg, msgsize);
}

static int store_size(void *f, const struct sora_toml_value *v, char *msg, size_t msgsize)
{
	const char *error;

	if (v->kind == SORA_TOML_INTEGER) {
		if (v->integer < 0) {
			snprintf(msg, msgsize, "must not be negative");
			return -1;
		}
		*(uint64_t *)f = (uint64_t)v->integer;
		return 0;
	}
	if (v->kind != SORA_TOML_STRING)
		return type_error("a size such as \"25mb\"", v, msg, msgsize);
	if (sora_parse_size(v->string, f, &error) < 0) {
		snprintf(msg, msgsize, "%s: \"%s\"", error, v->string);
		return -1;
	}
	return 0;
}

static int store_double(const struct sora_config_key *k, void *f, const struct sora_toml_value *v,
			char *msg, size_t msgsize)
{
	double d;

	if (v->kind == SORA_TOML_FLOAT)
		d = v->number;
	else if (v->kind == SORA_TOML_INTEGER)
		d = (double)v->integer;
	else
		return type_error("a number", v, msg, msgsize);
	if (d < (double)k->min || d > (double)k->max) {
		snprintf(msg, msgsize, "must be between %lld and %lld",
			 (long long)k->min, (long long)k->max);
		return -1;
	}
	*(double *)f = d;
	return 0;
}

static int store_string(const struct sora_config_key *k, void *f, struct sora_toml_value *v,
			char *msg, size_t msgsize)
{
	const char *why;

	if (v->kind != SORA_TOML_STRING)
		return type_error("a string", v, msg, msgsize);
	if (k->choices != NULL) {
		size_t i, off;

		for (i = 0; k->choices[i] != NULL; i++) {
			if (strcmp(v->string, k->choices[i]) == 0)
				break;
		}
		if (k->choices[i] == NULL) {
			off = (size_t)snprintf(msg, msgsize, "\"%s\" is not one of", v->string);
			for (i = 0; k->choices[i] != NULL && off < msgsize; i++)
				off += (size_t)snprintf(msg + off, msgsize - off, "%s \"%s\"",
							i > 0 ? "," : "", k->choices[i]);
			return -1;
		}
	}
	why = check_string(k, v->string, msg, msgsize);
	if (why != NULL) {
		if (why != msg)
			snprintf(msg, msgsize, "%s", why);
		return -1;
	}
	free_string(f);
	*(char **)f = v->string;
	v->string = NULL;
	return 0;
}

static int store_strings(const struct sora_config_key *k, void *base, void *f,
			 struct sora_toml_value *v, char *msg, size_t msgsize)
{
	char buf[256];

	if (v->kind != SORA_TOML_ARRAY)
		return type_error("an array of strings", v, msg, msgsize);
	for (size_t i = 0; i < v->count; i++) {
		const char *why = check_string(k, v->items[i], buf, sizeof(buf));
		if (why != NULL) {
			snprintf(msg, msgsize, "element %zu: %s", i + 1, why);
			return -1;
		}
	}
	sora_toml_strings_free(*(char ***)f);
	*(char ***)f = v->items;
	*(size_t *)field_at(base, k->count_offset) = v->count;
	v->items = NULL;
	v->count = 0;
	return 0;
}

static int store_cidrs(void *f, const struct sora_toml_value *v, char *msg, size_t msgsize)
{
	struct sora_cidr_list list = { NULL, 0 };
	const char *error;

	if (v->kind != SORA_TOML_ARRAY)
		return type_error("an array of networks such as [\"10.0.0.0/8\"]", v, msg, msgsize);
	for (size_t i = 0; i < v->count; i++) {
		if (sora_cidr_list_add(&list, v->items[i], &error) < 0) {
			snprintf(msg, msgsize, "element %zu (\"%s\"): %s", i + 1, v->items[i], error);
			sora_cidr_list_free(&list);
			return -1;
		}
	}
	sora_cidr_list_free(f);
	*(struct sora_cidr_list *)f = list;
	return 0;
}

static int store_server_type(void *f, const struct sora_toml_value *v, char *msg, size_t msgsize)
{
	size_t off;

	if (v->kind != SORA_TOML_STRING)
		return type_error("a string", v, msg, msgsize);
	if (sora_server_type_parse(v->string, f) == 0)
		return 0;
	off = (size_t)snprintf(msg, msgsize, "unknown server type \"%s\" (expected one of",
			       v->string);
	for (unsigned i = 0; i < SORA_SRV_TYPE_COUNT && off < msgsize; i++)
		off += (size_t)snprintf(msg + off, msgsize - off, " %s", sora_server_type_name(i));
	if (off < msgsize)
		snprintf(msg + off, msgsize - off, ")");
	return -1;
}

/* Decodes v into the field k describes. Ownership of v's strings moves
 * into the config on success. */
static int store_value(const struct sora_config_key *k, void *base, struct sora_toml_value *v,
		       char *msg, size_t msgsize)
{
	void *f = field_at(base, k->offset);

	switch (k->type) {
	case KT_STRING:
		return store_string(k, f, v, msg, msgsize);
	case KT_BOOL:
		if (v->kind != SORA_TOML_BOOL)
			return type_error("true or false", v, msg, msgsize);
		*(bool *)f = v->boolean;
		return 0;
	case KT_INT:
	case KT_INT64:
		return store_integer(k, f, v, msg, msgsize);
	case KT_DURATION:
		return store_duration(k, f, v, msg, msgsize);
	case KT_SIZE:
		return store_size(f, v, msg, msgsize);
	case KT_DOUBLE:
		return store_double(k, f, v, msg, msgsize);
	case KT_STRINGS:
		return store_strings(k, base, f, v, msg, msgsize);
	case KT_CIDRS:
		return store_cidrs(f, v, msg, msgsize);
	case KT_SERVER_TYPE:
		return store_server_type(f, v, msg, msgsize);
	}
	return -1;
}

static const struct sora_config_key *find_key(const struct sora_config_key *keys,
					      const char *name, size_t *index_r)
{
	for (size_t i = 0; keys[i].name != NULL; i++) {
		if (strcmp(keys[i].name, name) == 0) {
			*index_r = i;
			return &keys[i];
		}
	}
	return NULL;
}

static void set_key(struct loader *l, size_t ti, const char *key, const char *text,
		    unsigned line)
{
	struct table_ref *t = &l->tables[ti];
	const struct sora_config_key *k;
	struct sora_toml_value v;
	char where[SORA_TOML_MAX_LINE + 16], msg[512];
	size_t index;

	table_label(t, where, sizeof(where));
	/* The value is decoded even for keys that are ignored: a syntax error
	 * is an error wherever it is. */
	if (sora_toml_value_parse(text, &v, msg, sizeof(msg)) < 0) {
		fail_key(l, line, where, key, "%s", msg);
		return;
	}
	if (t->schema == NULL)
		goto out;   /* an unknown table: warned about once, at its header */
	k = find_key(t->schema->keys, key, &index);
	if (k == NULL) {
		l->config->warnings++;
		sora_warn(NULL, "%s:%u: unknown key '%s' %s", l->name, line, key, where);
		goto out;
	}
	if (t->key_lines[index] != 0) {
		fail_key(l, line, where, key, "set twice (first on line %u)", t->key_lines[index]);
		goto out;
	}
	if (store_value(k, table_base(l, t), &v, msg, sizeof(msg)) < 0)
		fail_key(l, line, where, key, "%s", msg);
	else
		t->key_lines[index] = line;
out:
	sora_toml_value_free(&v);
}

/* At the last line of a multi-line array, joins its lines. inih has passed
 * them one by one already, but they are exactly the lines prepared in the
 * document, so they are taken from there in one piece. */
static void finish_array(struct loader *l)
{
	const char *first = strchr(l->doc.lines[l->pending_line - 1].text, '=');
	size_t len, off;
	char *text;

	if (first == NULL) {
		fail_line(l, l->pending_line, "internal error: array without its key");
		return;
	}
	first++;
	len = strlen(first) + 1;
	for (size_t i = l->pending_line; i < l->line; i++)
		len += strlen(l->doc.lines[i].text);
	text = malloc(len);
	if (text == NULL) {
		fail_line(l, l->pending_line, "out of memory");
		return;
	}
	off = sora_strlcpy(text, first, len);
	for (size_t i = l->pending_line; i < l->line; i++)
		off += sora_strlcpy(text + off, l->doc.lines[i].text, len - off);
	set_key(l, l->pending_table, l->pending_key, text, l->pending_line);
	sodium_memzero(text, len);
	free(text);
}

static int section_table(struct loader *l, const char *section, size_t *ti_r)
{
	uint64_t n;

	if (section[0] == '\0') {
		*ti_r = 0;
		return 0;
	}
	if (l->doc.table_count == 0 ||
	    sora_str_to_u64(sora_str_c(section), l->doc.table_count - 1, &n) < 0)
		return -1;
	*ti_r = (size_t)n + 1;
	return 0;
}

/* The INI reader: hands inih the prepared lines and notes which line is
 * current, since inih reports no line numbers to the handler. inih reads
 * one line and handles it before it reads the next. */
static char *read_line(char *str, int num, void *stream)
{
	struct loader *l = stream;
	const char *text;

	if (l->next_line >= l->doc.line_count)
		return NULL;
	text = l->doc.lines[l->next_line++].text;
	l->line = (unsigned)l->next_line;
	if (num < 1 || sora_strlcpy(str, text, (size_t)num) >= (size_t)num)
		fail_line(l, l->line, "internal error: line longer than inih's buffer");
	return str;
}

static int on_ini_pair(void *user, const char *section, const char *name, const char *value)
{
	struct loader *l = user;
	enum sora_toml_line_kind kind;
	size_t ti;

	/* After the first error the rest is not looked at: inih goes on to
	 * the end of the input regardless. */
	if (l->failed)
		return 1;
	if (l->line == 0 || section_table(l, section, &ti) < 0) {
		fail_line(l, l->line, "internal error: unexpected section from inih");
		return 1;
	}
	kind = l->doc.lines[l->line - 1].kind;
	switch (kind) {
	case SORA_TOML_KEY:
		set_key(l, ti, name, value, l->line);
		break;
	case SORA_TOML_KEY_OPEN:
		l->pending_table = ti;
		l->pending_line = l->line;
		sora_strlcpy(l->pending_key, name, sizeof(l->pending_key));
		break;
	case SORA_TOML_CONT:
		break;
	case SORA_TOML_CONT_END:
		finish_array(l);
		break;
	default:
		fail_line(l, l->line, "internal error: inih reported a value on a line without one");
		break;
	}
	return 1;
}

/* ---- step 4: whole-config checks ---------------------------------------- */

/* The line on which `key` was set in the table of `schema` (for server
 * tables: of server si), or 0 if it was not set. */
static unsigned key_line(const struct loader *l, const struct sora_config_table *schema,
			 size_t si, const char *key)
{
	size_t index;

	if (find_key(schema->keys, key, &index) == NULL)
		return 0;
	for (size_t i = 0; i < l->table_count; i++) {
		const struct table_ref *t = &l->tables[i];
		if (t->schema == schema && (schema->scope != SCOPE_SERVER || t->server == si) &&
		    t->key_lines[index] != 0)
			return t->key_lines[index];
	}
	return 0;
}

/* The header line of the table of `schema` (server si), or 0. */
static unsigned table_line(const struct loader *l, const struct sora_config_table *schema, size_t si)
{
	for (size_t i = 0; i < l->table_count; i++) {
		const struct table_ref *t = &l->tables[i];
		if (t->schema == schema && (schema->scope != SCOPE_SERVER || t->server == si))
			return t->line;
	}
	return 0;
}

static const struct sora_config_table *config_table(const char *name)
{
	for (size_t i = 0; i < sora_config_fixed_table_count; i++) {
		if (strcmp(sora_config_fixed_tables[i].name, name) == 0)
			return &sora_config_fixed_tables[i];
	}
	return NULL;
}

/* Where to point for a key of a fixed table: the key's line, else the
 * table's header, else line 0 (the table is not in the file at all). */
static unsigned config_key_line(const struct loader *l, const char *table, const char *key)
{
	const struct sora_config_table *schema = config_table(table);
	unsigned line = key_line(l, schema, NONE, key);

	return line != 0 ? line : table_line(l, schema, NONE);
}

static unsigned server_key_line(const struct loader *l, size_t si, const char *key)
{
	unsigned line = key_line(l, &sora_config_server_table, si, key);

	return line != 0 ? line : l->servers[si].line;
}

/* TLS files are opened only when the server uses TLS, so an example
 * config may name certificates that exist only on the real host. Any
 * existing file is fine for stat(); only regular files are opened (a FIFO
 * would block). */
static void check_file(struct loader *l, size_t si, const char *key, const char *path)
{
	char where[SORA_TOML_MAX_LINE + 16], why[128];
	unsigned line = server_key_line(l, si, key);
	struct stat st;
	int fd;

	server_label(l, si, where, sizeof(where));
	if (stat(path, &st) < 0) {
		if (errno == ENOENT || errno == ENOTDIR)
			fail_key(l, line, where, key, "file not found: %s", path);
		else
			fail_key(l, line, where, key, "cannot access %s: %s", path,
				 strerror_r(errno, why, sizeof(why)));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		fail_key(l, line, where, key, "not a regular file: %s", path);
		return;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		fail_key(l, line, where, key, "file not readable: %s (%s)", path,
			 strerror_r(errno, why, sizeof(why)));
		return;
	}
	close(fd);
}

static void check_server_tls(struct loader *l, size_t si, const char *where)
{
	const struct sora_server_config *s = &l->config->servers[si];

	if (s->tls || s->tls_use_starttls) {
		const char *key = s->tls ? "tls" : "tls_use_starttls";

		if (s->tls_cert_file == NULL || s->tls_key_file == NULL) {
			fail_key(l, server_key_line(l, si, key), where, key,
				 "%s = true needs tls_cert_file and tls_key_file", key);
			return;
		}
		check_file(l, si, "tls_cert_file", s->tls_cert_file);
		check_file(l, si, "tls_key_file", s->tls_key_file);
		if (s->tls_ca_file != NULL)
			check_file(l, si, "tls_ca_file", s->tls_ca_file);
	}
	if (s->tls_verify && s->tls_ca_file == NULL)
		fail_key(l, server_key_line(l, si, "tls_verify"), where, "tls_verify",
			 "tls_verify = true needs tls_ca_file (the CAs that sign client "
			 "certificates)");
}

static void check_server(struct loader *l, size_t si)
{
	const struct sora_server_config *s = &l->config->servers[si];
	char where[SORA_TOML_MAX_LINE + 16];

	server_label(l, si, where, sizeof(where));
	check_server_tls(l, si, where);
	if (s->start && s->addr == NULL)
		fail_key(l, l->servers[si].line, where, "addr",
			 "missing (a server with start = true needs an address to listen on)");
	if (s->start && sora_server_type_is_proxy(s->type) && s->remote_addrs_count == 0)
		fail_key(l, server_key_line(l, si, "remote_addrs"), where, "remote_addrs",
			 "missing (a %s server needs at least one backend)",
			 sora_server_type_name(s->type));
	if (s->start && s->type == SORA_SRV_HTTP_API && (s->api_key == NULL || s->api_key[0] == '\0'))
		fail_key(l, server_key_line(l, si, "api_key"), where, "api_key",
			 "missing (the HTTP API is never served without a key)");

	for (size_t i = 0; i < l->table_count; i++) {
		const struct table_ref *t = &l->tables[i];
		if (t->schema != NULL && t->schema->scope == SCOPE_FILTER && t->server == si &&
		    s->client_filters[t->item].ja4_fingerprint == NULL) {
			char fwhere[SORA_TOML_MAX_LINE + 16];
			table_label(t, fwhere, sizeof(fwhere));
			fail_key(l, t->line, fwhere, "ja4_fingerprint", "missing");
		}
	}

	/* Two listeners on one address would, with SO_REUSEPORT, share the
	 * port's connections at random instead of failing to bind. */
	if (!s->start || s->addr == NULL)
		return;
	for (size_t j = 0; j < si; j++) {
		const struct sora_server_config *o = &l->config->servers[j];
		if (o->start && o->addr != NULL && strcmp(o->addr, s->addr) == 0)
			fail_key(l, server_key_line(l, si, "addr"), where, "addr",
				 "\"%s\" is also used by the server on line %u", s->addr,
				 l->servers[j].line);
	}
}

/* Settles what depends on the whole server: its type (from the table
 * name when not given), its name, type-dependent defaults. */
static void finalize_server(struct loader *l, size_t si)
{
	struct sora_server_config *s = &l->config->servers[si];
	struct server_meta *m = &l->servers[si];
	char where[SORA_TOML_MAX_LINE + 16], name[64];

	server_label(l, si, where, sizeof(where));
	if (key_line(l, &sora_config_server_table, si, "type") == 0) {
		if (m->anonymous) {
			fail_key(l, m->line, where, "type",
				 "missing (a [[servers]] entry needs type = \"imap\", \"lmtp_proxy\", ...)");
			return;
		}
		if (sora_server_type_parse(s->name, &s->type) < 0) {
			fail_line(l, m->line, "[servers.%s]: '%s' is not a server type; "
				  "add type = \"...\" (imap, pop3, lmtp, managesieve, their "
				  "_proxy variants, http_api, metrics)", s->name, s->name);
			return;
		}
	}
	if (m->anonymous) {
		snprintf(name, sizeof(name), "%s#%zu", sora_server_type_name(s->type), si + 1);
		if ((s->name = strdup(name)) == NULL)
			goto nomem;
	}
	if (asprintf(&s->defined_at, "%s:%u", l->name, m->line) < 0) {
		s->defined_at = NULL;
		goto nomem;
	}
	if (s->hostname == NULL && (s->hostname = strdup(l->config->hostname)) == NULL)
		goto nomem;
	/* MTAs deliver from a handful of addresses, so a per-IP limit on LMTP
	 * would throttle exactly the clients it exists for. */
	if ((s->type == SORA_SRV_LMTP || s->type == SORA_SRV_LMTP_PROXY) &&
	    key_line(l, &sora_config_server_table, si, "max_connections_per_ip") == 0)
		s->max_connections_per_ip = 0;
	check_server(l, si);
	return;
nomem:
	fail_line(l, m->line, "out of memory");
}

static void check_storage(struct loader *l)
{
	const struct sora_config *c = l->config;

	if (strcmp(c->storage.backend, "s3") == 0 &&
	    (c->s3.bucket == NULL || c->s3.endpoint == NULL))
		fail_key(l, config_key_line(l, "storage", "backend"), "in [storage]", "backend",
			 "backend = \"s3\" needs bucket and endpoint in [s3]");
	if (c->s3.endpoint != NULL && key_line(l, config_table("s3"), NONE, "use_ssl") != 0) {
		bool https = strncmp(c->s3.endpoint, "https://", 8) == 0;

		if ((https && !c->s3.use_ssl) ||
		    (strncmp(c->s3.endpoint, "http://", 7) == 0 && c->s3.use_ssl))
			fail_key(l, config_key_line(l, "s3", "use_ssl"), "in [s3]", "use_ssl",
				 "%s contradicts endpoint \"%s\" (the URL's scheme decides; "
				 "remove one of them)", c->s3.use_ssl ? "true" : "false",
				 c->s3.endpoint);
	}
	if (c->s3.encrypt && c->s3.encryption_key == NULL)
		fail_key(l, config_key_line(l, "s3", "encrypt"), "in [s3]", "encrypt",
			 "encrypt = true needs encryption_key (64 hex characters; "
			 "generate one with `openssl rand -hex 32` and back it up)");
}

static void check_tls(struct loader *l)
{
	const struct sora_tls_config *tls = &l->config->tls;
	const struct sora_letsencrypt_config *le = &tls->letsencrypt;

	if (!tls->enabled || strcmp(tls->provider, "letsencrypt") != 0)
		return;
	if (le->email == NULL || le->domains_count == 0) {
		const char *key = le->email == NULL ? "email" : "domains";
		unsigned line = config_key_line(l, "tls.letsencrypt", key);

		fail_key(l, line != 0 ? line : config_key_line(l, "tls", "provider"),
			 "in [tls.letsencrypt]", key,
			 "missing (provider = \"letsencrypt\" needs an account email and "
			 "at least one domain)");
	} else if (strcmp(le->storage_provider, "s3") == 0 && le->s3_bucket == NULL) {
		fail_key(l, config_key_line(l, "tls.letsencrypt", "storage_provider"),
			 "in [tls.letsencrypt]", "storage_provider",
			 "storage_provider = \"s3\" needs bucket in [tls.letsencrypt.s3]");
	}
}

static void check_cluster(struct loader *l)
{
	struct sora_cluster_config *cl = &l->config->cluster;
	unsigned char key[32];
	size_t key_len = 0;
	int rc;

	if (!cl->enabled)
		return;
	if (cl->secret_key == NULL) {
		fail_key(l, config_key_line(l, "cluster", "enabled"), "in [cluster]", "secret_key",
			 "missing (cluster mode needs a shared key: `openssl rand -base64 32`)");
		return;
	}
	rc = sodium_base642bin(key, sizeof(key), cl->secret_key, strlen(cl->secret_key),
			       NULL, &key_len, NULL, sodium_base64_VARIANT_ORIGINAL);
	sodium_memzero(key, sizeof(key));
	if (rc != 0 || key_len != sizeof(key)) {
		fail_key(l, config_key_line(l, "cluster", "secret_key"), "in [cluster]", "secret_key",
			 "must be the base64 encoding of 32 random bytes "
			 "(generate one with `openssl rand -base64 32`)");
	}
}

static void check_database(struct loader *l)
{
	const struct sora_database_config *db = &l->config->database;

	if (db->min_conns > db->max_conns)
		fail_key(l, config_key_line(l, "database", "min_conns"), "in [database]", "min_conns",
			 "%d is more than max_conns (%d)", db->min_conns, db->max_conns);
	for (size_t i = 0; i < l->table_count; i++) {
		const struct table_ref *t = &l->tables[i];
		if (t->schema != NULL && t->schema->scope == SCOPE_ENDPOINT &&
		    db->read_endpoints[t->item].host == NULL)
			fail_key(l, t->line, "in [[database.read_endpoints]]", "host", "missing");
	}
}

/* [servers.X.auth_rate_limit] accepts two spellings of the delay bounds
 * (Sora's initial_delay / max_delay and progressive_delay_min / _max);
 * both in one table would leave one silently ignored. */
static void check_rate_limit_aliases(struct loader *l)
{
	static const char *const pairs[][2] = {
		{ "initial_delay", "progressive_delay_min" },
		{ "max_delay", "progressive_delay_max" },
	};
	const struct sora_config_table *rate_limit = find_subtable("auth_rate_limit", 15);

	for (size_t si = 0; si < l->config->servers_count && !l->failed; si++) {
		for (size_t p = 0; p < sizeof(pairs) / sizeof(pairs[0]); p++) {
			unsigned a = key_line(l, rate_limit, si, pairs[p][0]);
			unsigned b = key_line(l, rate_limit, si, pairs[p][1]);

			if (a != 0 && b != 0)
				fail_line(l, a > b ? a : b, "keys '%s' (line %u) and '%s' (line %u) in "
					  "[servers.%s.auth_rate_limit] are two names of one setting: "
					  "give one", pairs[p][0], a, pairs[p][1], b,
					  l->config->servers[si].name);
		}
	}
}

/* Records the first feature that is configured but not built, in the
 * same "file:line: key ..." form as an error. `what` ends with its verb
 * ("... is", "... are"). */
static void note_unavailable(struct loader *l, unsigned line, const char *where,
			     const char *key, const char *what, const char *remedy)
{
	if (l->config->unavailable != NULL)
		return;
	if (asprintf(&l->config->unavailable, "%s:%u: key '%s' %s: %s not available in "
		     "this version of Sora; %s", l->name, line, key, where, what, remedy) < 0) {
		l->config->unavailable = NULL;
		fail_line(l, line, "out of memory");
	}
}

/* Keys that the loader parses (the security guide describes them) but that
 * nothing in this version acts on. Each is a switch an operator turns on
 * and would expect to work; running without it, silently, is worse than
 * refusing to start. Settings of protocols that are being built up (limits
 * of commands that do not exist yet, such as append_limit) are not listed:
 * they take effect when their command lands. Remove an entry here in the
 * change that implements it. */
static void check_available(struct loader *l)
{
	const struct sora_config *c = l->config;
	if (c->cluster.enabled)
		note_unavailable(l, config_key_line(l, "cluster", "enabled"), "in [cluster]",
				 "enabled", "cluster mode (rate-limit sync between nodes) is",
				 "set enabled = false");
	if (c->tls.enabled && strcmp(c->tls.provider, "letsencrypt") == 0)
		note_unavailable(l, config_key_line(l, "tls", "provider"), "in [tls]", "provider",
				 "provider = \"letsencrypt\" is", "set enabled = false and give "
				 "each TLS server tls_cert_file and tls_key_file");
	else if (c->tls.enabled)
		note_unavailable(l, config_key_line(l, "tls", "enabled"), "in [tls]", "enabled",
				 "the [tls] certificate manager is", "set enabled = false (each "
				 "server's tls_cert_file and tls_key_file serve TLS)");
	if (c->shared_mailboxes.enabled)
		note_unavailable(l, config_key_line(l, "shared_mailboxes", "enabled"),
				 "in [shared_mailboxes]", "enabled",
				 "shared mailboxes are", "set enabled = false");
	for (size_t si = 0; si < c->servers_count; si++) {
		const struct sora_server_config *s = &c->servers[si];

		if (!s->start)
			continue;
		for (size_t i = 0; i < l->table_count; i++) {
			const struct table_ref *t = &l->tables[i];
			char where[SORA_TOML_MAX_LINE + 16];

			if (t->schema == NULL || t->server != si)
				continue;
			table_label(t, where, sizeof(where));
			if (t->schema->scope == SCOPE_FILTER)
				note_unavailable(l, t->line, where, "ja4_fingerprint",
						 "client filtering by JA4 fingerprint is",
						 "remove this table");
		}
	}
}

int sora_config_check_startable(const struct sora_config *c, bool check_only,
				char *err, size_t errsize)
{
	if (c->unavailable != NULL) {
		snprintf(err, errsize, "%s", c->unavailable);
		return -1;
	}
	if (check_only && c->warnings > 0) {
		snprintf(err, errsize, "%s: %u warning%s above (an unknown key is usually a typo "
			 "that leaves a setting at its default); --check-config fails until %s "
			 "fixed", c->path, c->warnings, c->warnings == 1 ? "" : "s",
			 c->warnings == 1 ? "it is" : "they are");
		return -1;
	}
	return 0;
}

/* DESIGN.md §6: relative paths resolve against one documented base. The
 * base is base_dir when set (it must be absolute), else the working
 * directory at load time, which is what systemd's WorkingDirectory= (and
 * a shell) gives the server. Resolving here, once, means every reader of
 * the config (sora-backend, sora-admin) sees the same absolute paths and
 * the server can log them at start. Empty paths stay empty (they mean
 * "off" where a table allows that). */
static void resolve_paths(struct loader *l)
{
	struct sora_config *c = l->config;
	char **paths[] = { &c->uploader.path, &c->local_cache.path, &c->storage.fs_path };

	if (c->base_dir == NULL) {
		char *cwd = getcwd(NULL, 0);

		if (cwd == NULL) {
			fail_line(l, 0, "cannot resolve relative paths: working directory: %s",
				  strerror(errno));
			return;
		}
		c->base_dir = cwd;
		c->base_dir_is_cwd = true;
	} else if (c->base_dir[0] != '/') {
		fail_key(l, key_line(l, &sora_config_root_table, NONE, "base_dir"), "at the top level",
			 "base_dir", "must be an absolute path, not \"%s\"", c->base_dir);
		return;
	}
	for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		char *p = *paths[i], *abs;
		size_t blen = strlen(c->base_dir);

		if (p == NULL || p[0] == '\0' || p[0] == '/')
			continue;
		while (blen > 1 && c->base_dir[blen - 1] == '/')
			blen--;
		if (asprintf(&abs, "%.*s/%s", (int)blen, c->base_dir, p) < 0) {
			fail_line(l, 0, "out of memory");
			return;
		}
		free_string(paths[i]);
		*paths[i] = abs;
	}
}

static void finalize(struct loader *l)
{
	struct sora_config *c = l->config;

	if (c->hostname == NULL) {
		char host[256];

		if (gethostname(host, sizeof(host)) < 0)
			sora_strlcpy(host, "localhost", sizeof(host));
		host[sizeof(host) - 1] = '\0';
		if ((c->hostname = strdup(host)) == NULL) {
			fail_line(l, 0, "out of memory");
			return;
		}
	}
	if (c->cluster.node_id == NULL && (c->cluster.node_id = strdup(c->hostname)) == NULL) {
		fail_line(l, 0, "out of memory");
		return;
	}
	resolve_paths(l);
	if (l->failed)
		return;
	check_database(l);
	check_storage(l);
	check_tls(l);
	check_cluster(l);
	for (size_t i = 0; i < c->servers_count && !l->failed; i++)
		finalize_server(l, i);
	check_rate_limit_aliases(l);
	if (!l->failed)
		check_available(l);
}

/* ---- loading ------------------------------------------------------------ */

static int load_text(const char *text, size_t len, const char *name,
		     struct sora_config **config_r, char *err, size_t errsize)
{
	struct loader l = {
		.name = name,
		.last_anonymous = NONE,
		.err = err,
		.errsize = errsize,
	};
	unsigned line;
	char msg[256];
	int rc;

	if (errsize > 0)
		err[0] = '\0';
	if (sora_toml_prepare(text, len, &l.doc, &line, msg, sizeof(msg)) < 0) {
		fail_line(&l, line, "%s", msg);
		goto out;
	}
	l.config = config_new();
	if (l.config == NULL || (l.config->path = strdup(name)) == NULL) {
		fail_line(&l, 0, "out of memory");
		goto out;
	}
	if (resolve_tables(&l) < 0)
		goto out;
	rc = ini_parse_stream(read_line, &l, on_ini_pair, &l);
	if (rc != 0 && !l.failed)
		fail_line(&l, rc > 0 ? (unsigned)rc : 0, "syntax error");
	if (!l.failed)
		finalize(&l);
out:
	if (!l.failed)
		*config_r = l.config;
	else
		sora_config_free(&l.config);
	for (size_t i = 0; i < l.table_count; i++)
		free(l.tables[i].key_lines);
	free(l.tables);
	free(l.servers);
	sora_toml_doc_free(&l.doc);
	sodium_memzero(l.pending_key, sizeof(l.pending_key));
	return l.failed ? -1 : 0;
}

int sora_config_load_string(const char *text, size_t len, const char *name,
			    struct sora_config **config_r, char *err, size_t errsize)
{
	return load_text(text, len, name != NULL ? name : "(config)", config_r, err, errsize);
}

int sora_config_load(const char *path, struct sora_config **config_r,
		     char *err, size_t errsize)
{
	char *text = NULL;
	size_t size = 0, len = 0;
	struct stat st;
	int fd, ret = -1;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		snprintf(err, errsize, "%s: cannot open config file: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		snprintf(err, errsize, "%s: not a regular file", path);
		goto out;
	}
	if (st.st_size > SORA_TOML_MAX_TEXT) {
		snprintf(err, errsize, "%s: config file too large (over %d bytes)", path,
			 SORA_TOML_MAX_TEXT);
		goto out;
	}
	/* One allocation of the final size (plus one byte to notice growth),
	 * so no copy of the secrets in it is left behind by a realloc. */
	size = (size_t)st.st_size + 1;
	text = malloc(size);
	if (text == NULL) {
		snprintf(err, errsize, "%s: out of memory", path);
		goto out;
	}
	for (;;) {
		ssize_t n = read(fd, text + len, size - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(err, errsize, "%s: cannot read config file: %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len == size) {
			snprintf(err, errsize, "%s: config file changed while being read", path);
			goto out;
		}
	}
	ret = load_text(text, len, path, config_r, err, errsize);
out:
	if (text != NULL) {
		sodium_memzero(text, size);
		free(text);
	}
	close(fd);
	return ret;
}
