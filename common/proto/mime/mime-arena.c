/* Bump allocator for parsed messages: a message is thousands of small
 * strings and structs that all die together, so they come from a list of
 * chunks freed in one go instead of one malloc each. */
#include "common/proto/mime/mime-private.h"

#include <stdlib.h>
#include <string.h>

#define ARENA_CHUNK_SIZE 4096
#define ARENA_ALIGN 8

struct arena_chunk {
	struct arena_chunk *next;
	size_t size, used;
	/* The data follows the header, aligned like max_align_t. */
	_Alignas(16) unsigned char data[];
};

struct sora_mime_arena {
	struct arena_chunk *head;
	size_t used;
};

struct sora_mime_arena *sora_mime_arena_new(void)
{
	return calloc(1, sizeof(struct sora_mime_arena));
}

void sora_mime_arena_free(struct sora_mime_arena **arena)
{
	struct arena_chunk *c, *next;

	if (*arena == NULL)
		return;
	for (c = (*arena)->head; c != NULL; c = next) {
		next = c->next;
		free(c);
	}
	free(*arena);
	*arena = NULL;
}

void *mime_arena_alloc(struct sora_mime_arena *arena, size_t size)
{
	struct arena_chunk *c = arena->head;
	size_t need, csize;
	void *p;

	if (size > SIZE_MAX / 2)
		return NULL;
	need = (size + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);
	if (need == 0)
		need = ARENA_ALIGN;
	if (c == NULL || c->size - c->used < need) {
		/* Big requests get a chunk of their own behind the current one,
		 * so the space left in the current chunk is not wasted. */
		csize = need > ARENA_CHUNK_SIZE / 4 ? need : ARENA_CHUNK_SIZE;
		c = malloc(sizeof(*c) + csize);
		if (c == NULL)
			return NULL;
		c->size = csize;
		c->used = 0;
		if (csize != ARENA_CHUNK_SIZE && arena->head != NULL) {
			c->next = arena->head->next;
			arena->head->next = c;
		} else {
			c->next = arena->head;
			arena->head = c;
		}
	}
	p = c->data + c->used;
	c->used += need;
	arena->used += need;
	memset(p, 0, need);
	return p;
}

size_t mime_arena_used(const struct sora_mime_arena *arena)
{
	return arena->used;
}

int mime_arena_strdup(struct sora_mime_arena *arena, const void *p, size_t len,
		      struct sora_str *out)
{
	char *s;

	if (len == SIZE_MAX)
		return -1;
	s = mime_arena_alloc(arena, len + 1);
	if (s == NULL)
		return -1;
	if (len > 0)
		memcpy(s, p, len);
	s[len] = '\0';
	*out = sora_str_make(s, len);
	return 0;
}

int mime_arena_strdup_lower(struct sora_mime_arena *arena, const void *p, size_t len,
			    struct sora_str *out)
{
	char *s;

	if (mime_arena_strdup(arena, p, len, out) < 0)
		return -1;
	s = (char *)out->p;
	for (size_t i = 0; i < len; i++)
		s[i] = (char)mime_ascii_lower((unsigned char)s[i]);
	return 0;
}
