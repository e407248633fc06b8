#include "backend/blob/blob-cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/blob/blob-file.h"
#include "common/core/log.h"

#define SCAN_MAX_DEPTH 8

struct cache_entry {
	struct cache_entry *hnext;          /* hash chain */
	struct cache_entry *prev, *next;    /* LRU list, head = most recent */
	uint64_t size;
	char key[];
};

struct sora_blob_cache {
	char *root;
	char *tmpdir;
	uint64_t capacity;
	uint64_t max_object_size;

	pthread_mutex_t lock;
	struct cache_entry **buckets;
	size_t nbuckets;
	size_t count;
	struct cache_entry *lru_head, *lru_tail;
	uint64_t used;
	uint64_t hits, misses, evictions;
};

struct sora_blob_cache_writer {
	struct sora_blob_cache *cache;
	char *key;
	int fd;
	uint64_t size;
	bool failed;
	char tmp[PATH_MAX];
};

static uint64_t key_hash(const char *key)
{
	uint64_t h = 1469598103934665603ULL;

	for (const unsigned char *p = (const unsigned char *)key; *p != '\0'; p++) {
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

/* Object keys plus the reservation of the temp directory's name. */
static int cache_key_check(const char *key, struct sora_error *err)
{
	size_t tl = strlen(SORA_BLOB_CACHE_TMPDIR);

	if (sora_blob_key_check(key, err) < 0)
		return -1;
	if (strncmp(key, SORA_BLOB_CACHE_TMPDIR, tl) == 0 && (key[tl] == '/' || key[tl] == '\0')) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "local cache: key uses the reserved name %s",
			       SORA_BLOB_CACHE_TMPDIR);
		return -1;
	}
	return 0;
}

/* All index functions below expect the lock to be held. */

static struct cache_entry **find_slot(struct sora_blob_cache *c, const char *key)
{
	struct cache_entry **pp = &c->buckets[key_hash(key) & (c->nbuckets - 1)];

	while (*pp != NULL && strcmp((*pp)->key, key) != 0)
		pp = &(*pp)->hnext;
	return pp;
}

static void lru_unlink(struct sora_blob_cache *c, struct cache_entry *e)
{
	if (e->prev != NULL)
		e->prev->next = e->next;
	else
		c->lru_head = e->next;
	if (e->next != NULL)
		e->next->prev = e->prev;
	else
		c->lru_tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_head(struct sora_blob_cache *c, struct cache_entry *e)
{
	e->prev = NULL;
	e->next = c->lru_head;
	if (c->lru_head != NULL)
		c->lru_head->prev = e;
	c->lru_head = e;
	if (c->lru_tail == NULL)
		c->lru_tail = e;
}

static void grow(struct sora_blob_cache *c)
{
	size_t n = c->nbuckets * 2;
	struct cache_entry **b = calloc(n, sizeof(*b));

	/* Without memory the table just gets longer chains. */
	if (b == NULL)
		return;
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct cache_entry *e = c->buckets[i];
		while (e != NULL) {
			struct cache_entry *next = e->hnext;
			size_t slot = key_hash(e->key) & (n - 1);
			e->hnext = b[slot];
			b[slot] = e;
			e = next;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

/* Adds or updates key as the most recently used entry. */
static int index_put(struct sora_blob_cache *c, const char *key, uint64_t size)
{
	struct cache_entry **pp = find_slot(c, key), *e = *pp;
	size_t klen;

	if (e != NULL) {
		c->used -= e->size;
		e->size = size;
		c->used += size;
		lru_unlink(c, e);
		lru_push_head(c, e);
		return 0;
	}
	klen = strlen(key);
	e = calloc(1, sizeof(*e) + klen + 1);
	if (e == NULL)
		return -1;
	memcpy(e->key, key, klen + 1);
	e->size = size;
	*pp = e;
	lru_push_head(c, e);
	c->used += size;
	c->count++;
	if (c->count > c->nbuckets * 2)
		grow(c);
	return 0;
}

static void index_drop(struct sora_blob_cache *c, struct cache_entry *e)
{
	struct cache_entry **pp = find_slot(c, e->key);

	if (*pp == e)
		*pp = e->hnext;
	lru_unlink(c, e);
	c->used -= e->size;
	c->count--;
	free(e);
}

static void evict_locked(struct sora_blob_cache *c, const char *keep)
{
	while (c->used > c->capacity && c->lru_tail != NULL) {
		struct cache_entry *e = c->lru_tail;
		char path[PATH_MAX];

		if (keep != NULL && strcmp(e->key, keep) == 0 && e == c->lru_head)
			break;
		if (sora_blob_path_join(path, sizeof(path), c->root, e->key) == 0)
			unlink(path);
		index_drop(c, e);
		c->evictions++;
	}
}

/* ---- start-up scan ---- */

struct scan_item {
	char *key;
	uint64_t size;
	time_t when;
};

struct scan {
	struct scan_item *items;
	size_t count, cap;
};

static int scan_dir(struct sora_blob_cache *c, struct scan *s, const char *rel, int depth)
{
	char path[PATH_MAX];
	struct dirent *de;
	DIR *d;

	if (depth > SCAN_MAX_DEPTH)
		return 0;
	if (rel[0] == '\0')
		snprintf(path, sizeof(path), "%s", c->root);
	else if (sora_blob_path_join(path, sizeof(path), c->root, rel) < 0)
		return 0;
	d = opendir(path);
	if (d == NULL)
		return depth == 0 ? -1 : 0;
	while ((de = readdir(d)) != NULL) {
		char child[PATH_MAX];
		struct stat st;
		int n;

		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (depth == 0 && strcmp(de->d_name, SORA_BLOB_CACHE_TMPDIR) == 0)
			continue;
		if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
			continue;
		n = rel[0] == '\0' ? snprintf(child, sizeof(child), "%s", de->d_name)
				   : snprintf(child, sizeof(child), "%s/%s", rel, de->d_name);
		if (n < 0 || (size_t)n >= sizeof(child))
			continue;
		if (S_ISDIR(st.st_mode)) {
			scan_dir(c, s, child, depth + 1);
			continue;
		}
		if (!S_ISREG(st.st_mode))
			continue;
		if (s->count == s->cap) {
			size_t ncap = s->cap == 0 ? 256 : s->cap * 2;
			struct scan_item *ni = realloc(s->items, ncap * sizeof(*ni));
			if (ni == NULL)
				break;
			s->items = ni;
			s->cap = ncap;
		}
		s->items[s->count].key = strdup(child);
		if (s->items[s->count].key == NULL)
			break;
		s->items[s->count].size = (uint64_t)st.st_size;
		s->items[s->count].when = st.st_atime > st.st_mtime ? st.st_atime : st.st_mtime;
		s->count++;
	}
	closedir(d);
	return 0;
}

static int scan_cmp(const void *a, const void *b)
{
	const struct scan_item *x = a, *y = b;

	if (x->when != y->when)
		return x->when < y->when ? -1 : 1;
	return strcmp(x->key, y->key);
}

int sora_blob_cache_open(const char *path, uint64_t capacity, uint64_t max_object_size,
			 struct sora_blob_cache **cache_r, struct sora_error *err)
{
	struct sora_blob_cache *c;
	struct scan s = { 0 };
	char tmpdir[PATH_MAX];
	size_t len;

	*cache_r = NULL;
	if (path == NULL || path[0] == '\0' || capacity == 0) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "local cache: path and a capacity above 0 are required");
		return -1;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	len = strlen(path);
	while (len > 1 && path[len - 1] == '/')
		len--;
	c->root = strndup(path, len);
	c->capacity = capacity;
	c->max_object_size = max_object_size;
	c->nbuckets = 1024;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->root == NULL || c->buckets == NULL ||
	    sora_blob_path_join(tmpdir, sizeof(tmpdir), c->root, SORA_BLOB_CACHE_TMPDIR) < 0 ||
	    (c->tmpdir = strdup(tmpdir)) == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto fail;
	}
	pthread_mutex_init(&c->lock, NULL);
	if (sora_blob_mkdirs(c->tmpdir, 0750) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "local cache: cannot create %s: %s",
			       c->tmpdir, strerror(errno));
		pthread_mutex_destroy(&c->lock);
		goto fail;
	}
	sora_blob_clean_dir(c->tmpdir);
	if (scan_dir(c, &s, "", 0) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "local cache: cannot read %s: %s", c->root,
			       strerror(errno));
		pthread_mutex_destroy(&c->lock);
		goto fail;
	}
	/* Oldest first, so the most recently used file ends at the head. */
	if (s.count > 0)
		qsort(s.items, s.count, sizeof(*s.items), scan_cmp);
	for (size_t i = 0; i < s.count; i++) {
		index_put(c, s.items[i].key, s.items[i].size);
		free(s.items[i].key);
	}
	free(s.items);
	evict_locked(c, NULL);
	sora_debug(NULL, "local cache %s: %zu files, %llu bytes", c->root, c->count,
		   (unsigned long long)c->used);
	*cache_r = c;
	return 0;
fail:
	free(c->buckets);
	free(c->root);
	free(c->tmpdir);
	free(c);
	return -1;
}

void sora_blob_cache_free(struct sora_blob_cache **cp)
{
	struct sora_blob_cache *c = *cp;

	if (c == NULL)
		return;
	while (c->lru_head != NULL) {
		struct cache_entry *e = c->lru_head;
		c->lru_head = e->next;
		free(e);
	}
	pthread_mutex_destroy(&c->lock);
	free(c->buckets);
	free(c->root);
	free(c->tmpdir);
	free(c);
	*cp = NULL;
}

uint64_t sora_blob_cache_max_object_size(const struct sora_blob_cache *c)
{
	return c->max_object_size;
}

void sora_blob_cache_get_stats(struct sora_blob_cache *c, struct sora_blob_cache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	st->capacity = c->capacity;
	st->used = c->used;
	st->count = c->count;
	st->hits = c->hits;
	st->misses = c->misses;
	st->evictions = c->evictions;
	pthread_mutex_unlock(&c->lock);
}

int sora_blob_cache_open_read(struct sora_blob_cache *c, const char *key, uint64_t *size_r)
{
	char path[PATH_MAX];
	struct cache_entry *e;
	struct stat st;
	int fd;

	if (cache_key_check(key, NULL) < 0 ||
	    sora_blob_path_join(path, sizeof(path), c->root, key) < 0)
		return -1;
	pthread_mutex_lock(&c->lock);
	e = *find_slot(c, key);
	if (e == NULL) {
		c->misses++;
		pthread_mutex_unlock(&c->lock);
		return -1;
	}
	lru_unlink(c, e);
	lru_push_head(c, e);
	pthread_mutex_unlock(&c->lock);

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
		pthread_mutex_lock(&c->lock);
		c->hits++;
		pthread_mutex_unlock(&c->lock);
		*size_r = (uint64_t)st.st_size;
		return fd;
	}
	if (fd >= 0)
		close(fd);
	/* Evicted meanwhile, or removed behind our back: forget it. */
	pthread_mutex_lock(&c->lock);
	e = *find_slot(c, key);
	if (e != NULL && access(path, F_OK) < 0)
		index_drop(c, e);
	c->misses++;
	pthread_mutex_unlock(&c->lock);
	return -1;
}

/* Renames tmp into place as key and indexes it (evicting as needed). */
static int install(struct sora_blob_cache *c, const char *key, const char *tmp,
		   uint64_t size, struct sora_error *err)
{
	char path[PATH_MAX];
	int ret = 0;

	if (sora_blob_path_join(path, sizeof(path), c->root, key) < 0 ||
	    sora_blob_mkdirs_parent(path, 0750) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "local cache: cannot create directory for %s: %s", key,
			       strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* Rename and index under the lock, so an eviction running in another
	 * thread never deletes a file the index does not know yet. */
	pthread_mutex_lock(&c->lock);
	if (rename(tmp, path) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "local cache: rename to %s: %s", path,
			       strerror(errno));
		unlink(tmp);
		ret = -1;
	} else if (index_put(c, key, size) < 0) {
		unlink(path);
		sora_error_set(err, SORA_ERR_TEMPORARY, "local cache: out of memory");
		ret = -1;
	} else {
		evict_locked(c, key);
	}
	pthread_mutex_unlock(&c->lock);
	return ret;
}

static bool fits(struct sora_blob_cache *c, uint64_t size)
{
	return size <= c->max_object_size && size <= c->capacity;
}

int sora_blob_cache_add_file(struct sora_blob_cache *c, const char *key,
			     const char *src_path, int move, struct sora_error *err)
{
	struct sora_blob_cache_writer *w = NULL;
	struct sora_blob_fd_source fsrc;
	struct sora_blob_source src;
	struct stat st;
	int fd, ret;

	if (cache_key_check(key, err) < 0) {
		if (move)
			unlink(src_path);
		return -1;
	}
	if (stat(src_path, &st) < 0)
		return sora_error_set(err,
			errno == ENOENT ? SORA_ERR_NOT_FOUND : sora_error_class_errno(errno),
			"local cache: %s: %s", src_path, strerror(errno));
	if (!fits(c, (uint64_t)st.st_size)) {
		if (move)
			unlink(src_path);
		sora_error_set(err, SORA_ERR_LIMIT,
			       "local cache: %s is larger than max_object_size", key);
		return -1;
	}
	if (move) {
		char path[PATH_MAX];
		if (sora_blob_path_join(path, sizeof(path), c->root, key) < 0 ||
		    sora_blob_mkdirs_parent(path, 0750) < 0) {
			unlink(src_path);
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "local cache: cannot create directory for %s", key);
			return -1;
		}
		pthread_mutex_lock(&c->lock);
		if (rename(src_path, path) == 0) {
			ret = index_put(c, key, (uint64_t)st.st_size) < 0 ? -1 : 0;
			if (ret < 0)
				unlink(path);
			else
				evict_locked(c, key);
			pthread_mutex_unlock(&c->lock);
			if (ret < 0)
				sora_error_set(err, SORA_ERR_TEMPORARY,
					       "local cache: out of memory");
			return ret;
		}
		pthread_mutex_unlock(&c->lock);
		if (errno != EXDEV) {
			sora_error_set(err, SORA_ERR_PERMANENT, "local cache: rename %s: %s",
				       src_path, strerror(errno));
			unlink(src_path);
			return -1;
		}
	}
	/* Another file system: copy. */
	fd = open(src_path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "local cache: %s: %s", src_path,
			       strerror(errno));
		return -1;
	}
	sora_blob_fd_source_init(&src, &fsrc, fd, 0, (uint64_t)st.st_size);
	ret = sora_blob_cache_writer_new(c, key, &w, err);
	if (ret == 0) {
		if (sora_blob_write_source(w->fd, &src, err) < 0) {
			sora_blob_cache_writer_abort(&w);
			ret = -1;
		} else {
			w->size = (uint64_t)st.st_size;
			ret = sora_blob_cache_writer_commit(&w, err);
		}
	}
	close(fd);
	if (move)
		unlink(src_path);
	return ret;
}

int sora_blob_cache_writer_new(struct sora_blob_cache *c, const char *key,
			       struct sora_blob_cache_writer **w_r, struct sora_error *err)
{
	struct sora_blob_cache_writer *w;

	*w_r = NULL;
	if (cache_key_check(key, err) < 0)
		return -1;
	w = calloc(1, sizeof(*w));
	if (w == NULL || (w->key = strdup(key)) == NULL) {
		free(w);
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	w->cache = c;
	w->fd = sora_blob_tmpfile(c->tmpdir, w->tmp, sizeof(w->tmp));
	if (w->fd < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "local cache: temp file in %s: %s",
			       c->tmpdir, strerror(errno));
		free(w->key);
		free(w);
		return -1;
	}
	*w_r = w;
	return 0;
}

int sora_blob_cache_writer_write(struct sora_blob_cache_writer *w, const void *data, size_t len)
{
	if (w->failed)
		return -1;
	if (!fits(w->cache, w->size + len) || sora_blob_write_all(w->fd, data, len) < 0) {
		w->failed = true;
		return -1;
	}
	w->size += len;
	return 0;
}

static void writer_free(struct sora_blob_cache_writer **wp)
{
	struct sora_blob_cache_writer *w = *wp;

	if (w->fd >= 0)
		close(w->fd);
	free(w->key);
	free(w);
	*wp = NULL;
}

int sora_blob_cache_writer_commit(struct sora_blob_cache_writer **wp, struct sora_error *err)
{
	struct sora_blob_cache_writer *w = *wp;
	int ret;

	if (w->failed) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "local cache: writing %s failed or it is too large", w->key);
		sora_blob_cache_writer_abort(wp);
		return -1;
	}
	close(w->fd);
	w->fd = -1;
	ret = install(w->cache, w->key, w->tmp, w->size, err);
	writer_free(wp);
	return ret;
}

void sora_blob_cache_writer_abort(struct sora_blob_cache_writer **wp)
{
	if (wp == NULL || *wp == NULL)
		return;
	unlink((*wp)->tmp);
	writer_free(wp);
}

void sora_blob_cache_remove(struct sora_blob_cache *c, const char *key)
{
	char path[PATH_MAX];
	struct cache_entry *e;

	if (cache_key_check(key, NULL) < 0 ||
	    sora_blob_path_join(path, sizeof(path), c->root, key) < 0)
		return;
	pthread_mutex_lock(&c->lock);
	e = *find_slot(c, key);
	if (e != NULL)
		index_drop(c, e);
	unlink(path);
	pthread_mutex_unlock(&c->lock);
}
