/* The TOML subset of the config file, and how it is handed to inih.
 *
 * Internal to common/config/. inih (DESIGN.md §3) splits "key = value"
 * lines and sections, but it knows nothing about TOML: `#` after a value is
 * part of the value, ` ;` starts a comment even inside quotes, a line is cut
 * after 199 characters, section names after 49, it has no arrays of tables,
 * and it never reports a section that holds no keys. So the file goes
 * through two steps:
 *
 * 1. sora_toml_prepare() reads the text line by line and produces exactly
 *    one INI line per source line, so inih's line numbers are the file's.
 *    Comments are removed (respecting quotes); a ';' after a space inside a
 *    string becomes the TOML escape \u003b, which decodes to the same byte
 *    but which inih does not take for a comment; the lines of a multi-line
 *    array become indented continuation lines, which inih hands to its
 *    handler one by one under the same key; every table header becomes
 *    "[N]", where N indexes the list of tables collected with their real
 *    names, kinds and lines. Anything outside the subset, and any line
 *    that inih would cut, is an error with the line number.
 * 2. The loader runs inih over those lines and decodes each value with
 *    sora_toml_value_parse().
 *
 * Supported: `[a.b.c]` and `[[a.b]]` headers with bare names; `key = value`
 * with bare keys; values: basic strings ("..." with the escapes \" \\
 * \uXXXX \UXXXXXXXX; control characters, escaped or not, are refused),
 * integers (optional sign, `_` between digits), decimals such as 2.5,
 * true/false, and arrays of strings, which may span lines and end with a
 * trailing comma.
 *
 * Ownership: a struct sora_toml_doc owns all its memory; everything that
 * held config text is wiped before it is freed (the file holds passwords).
 * Thread safety: no shared state; a document belongs to one thread. */
#ifndef SORA_CONFIG_CONFIG_TOML_H
#define SORA_CONFIG_CONFIG_TOML_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest line inih takes whole. Our reader hands it lines without a
 * newline, so all but the terminating NUL of its 200-byte buffer are usable. */
#define SORA_TOML_MAX_LINE 199

/* The largest config text accepted at all. */
#define SORA_TOML_MAX_TEXT (4 * 1024 * 1024)

enum sora_toml_line_kind {
	SORA_TOML_BLANK,        /* empty, or only a comment */
	SORA_TOML_TABLE,        /* a table header, emitted as "[N]" */
	SORA_TOML_KEY,          /* "key = value", complete on this line */
	SORA_TOML_KEY_OPEN,     /* "key = [..." whose array goes on below */
	SORA_TOML_CONT,         /* inside a multi-line array */
	SORA_TOML_CONT_END,     /* the line that closes a multi-line array */
};

struct sora_toml_line {
	enum sora_toml_line_kind kind;
	const char *text;       /* the INI line handed to inih, NUL-terminated */
};

struct sora_toml_table {
	char *name;             /* "servers.imap", without brackets */
	bool is_array;          /* written [[name]] */
	unsigned line;          /* 1-based line of the header */
};

struct sora_toml_doc {
	struct sora_toml_line *lines;    /* one per source line */
	size_t line_count;
	struct sora_toml_table *tables;  /* in file order; index N is "[N]" */
	size_t table_count;
	char *storage;                   /* backs every lines[].text */
	size_t storage_size;
};

/* Prepares `len` bytes of config text. On success returns 0 and fills doc.
 * On error returns -1, frees what it built, sets *line_r to the offending
 * 1-based line and writes a message (without file or line) into err. */
int sora_toml_prepare(const char *text, size_t len, struct sora_toml_doc *doc,
		      unsigned *line_r, char *err, size_t errsize);
void sora_toml_doc_free(struct sora_toml_doc *doc);

enum sora_toml_kind {
	SORA_TOML_STRING,
	SORA_TOML_INTEGER,
	SORA_TOML_FLOAT,
	SORA_TOML_BOOL,
	SORA_TOML_ARRAY,        /* of strings */
};

struct sora_toml_value {
	enum sora_toml_kind kind;
	char *string;           /* SORA_TOML_STRING, owned */
	int64_t integer;
	double number;          /* SORA_TOML_FLOAT */
	bool boolean;
	char **items;           /* SORA_TOML_ARRAY: NULL-terminated, owned */
	size_t count;
};

/* Decodes one value (comments already removed). Returns 0, or -1 with a
 * message in err. */
int sora_toml_value_parse(const char *text, struct sora_toml_value *value_r,
			  char *err, size_t errsize);
/* Wipes and frees what the value owns; leaves an empty value. */
void sora_toml_value_free(struct sora_toml_value *value);
/* "a string", "an integer", ... for messages. */
const char *sora_toml_kind_name(enum sora_toml_kind kind);

/* Wipes and frees a NULL-terminated string array. NULL-safe. */
void sora_toml_strings_free(char **items);

#endif
