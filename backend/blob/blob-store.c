#include "backend/blob/blob-store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#include <linux/magic.h>
#include <sodium.h>

#include "backend/blob/blob-file.h"
#include "backend/blob/blob-fs.h"
#include "common/core/log.h"

#define STAGING_TMPDIR "tmp"
#define STAGING_ASIDEDIR "aside"
#define STAGING_LOCKFILE ".sora-lock"
#define IO_CHUNK (64 * 1024)

struct sora_blob_store {
	struct sora_blob_driver *driver;
	struct sora_blob_keyring *keyring;
	struct sora_blob_cache *cache;
	bool encrypt;
	char *staging;
	char *staging_tmp;
	char *staging_aside;   /* orphans being removed, see unstage_orphan */
	char *direct_root;     /* direct fs store: its root, else NULL */
	char *direct_tmp;      /* and its temp directory (same file system) */
	bool no_dio;           /* direct store: its file system refused O_DIRECT */
	bool anon_tmp;         /* writers' files are O_TMPFILE until placed */
	bool names_sync;       /* a file's fsync makes its new name durable */
	int lock_fd;           /* <staging>/.sora-lock, flock(LOCK_EX) while open */
};

/* Memory for structs that embed a struct sora_blob_hasher, whose libsodium
 * state is declared 64-byte aligned. */
static void *alloc_aligned(size_t size)
{
	void *p = aligned_alloc(64, (size + 63) & ~(size_t)63);

	if (p != NULL)
		memset(p, 0, size);
	return p;
}

static int staged_path(struct sora_blob_store *s, int64_t account_id, const char *hash,
		       char *dst, size_t size, struct sora_error *err);

/* Puts every "<account>.<hash>" file of the aside directory back in its
 * staging place (unless a copy is there already) and removes it. */
static int restore_aside(struct sora_blob_store *s)
{
	DIR *d = opendir(s->staging_aside);
	struct dirent *de;
	int ret = 0;

	if (d == NULL)
		return -1;
	while ((de = readdir(d)) != NULL) {
		char path[PATH_MAX], hash[SORA_BLOB_HASH_HEX_SIZE];
		const char *dot = strchr(de->d_name, '.');
		uint64_t account = 0;

		if (de->d_name[0] == '.' || dot == NULL ||
		    sora_str_to_u64(sora_str_make(de->d_name, (size_t)(dot - de->d_name)), INT64_MAX,
				    &account) < 0 ||
		    sora_strlcpy(hash, dot + 1, sizeof(hash)) >= sizeof(hash) ||
		    staged_path(s, (int64_t)account, hash, path, sizeof(path), NULL) < 0)
			continue;
		if (sora_blob_mkdirs_parent_durable(path, 0750) < 0 ||
		    (linkat(dirfd(d), de->d_name, AT_FDCWD, path, 0) < 0 && errno != EEXIST) ||
		    sora_blob_fsync_parent(path) < 0) {
			ret = -1;
			break;
		}
		unlinkat(dirfd(d), de->d_name, 0);
	}
	closedir(d);
	return ret;
}

/* A writer's file is created without a name (O_TMPFILE) in the temp
 * directory and linked into place once it is complete and flushed, so no
 * name ever points at a partial body, as with a named temp file and
 * rename. Without a name, flushing the file does not also flush the temp
 * directory: ext4 without a journal writes a new file's directory with
 * its fsync (one block and one inode write per body, measured: 7 block
 * writes per body with a named temp file, 6 without), and a journalling
 * file system commits the temp name's creation and removal. The link
 * goes through /proc/self/fd, which needs no privilege (AT_EMPTY_PATH
 * needs CAP_DAC_READ_SEARCH). A file system without O_TMPFILE, or a
 * system without /proc, gets named temp files: anon_tmp_works() tries
 * both once when the store opens. The file's link count is 0 on disk
 * until it is fsynced again after the link: see sync_placed(). */
static int anon_tmpfile(const char *dir)
{
	return open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600);
}

static int anon_link(int fd, const char *path)
{
	char proc[64];

	snprintf(proc, sizeof(proc), "/proc/self/fd/%d", fd);
	return linkat(AT_FDCWD, proc, AT_FDCWD, path, AT_SYMLINK_FOLLOW);
}

static bool anon_tmp_works(const char *dir)
{
	char path[PATH_MAX];
	int fd = anon_tmpfile(dir);
	bool ok;

	if (fd < 0)
		return false;
	snprintf(path, sizeof(path), "%s/probe.%ld", dir, (long)getpid());
	unlink(path);
	ok = anon_link(fd, path) == 0;
	if (ok)
		unlink(path);
	close(fd);
	return ok;
}

/* Whether a file's fsync also makes a name just linked to it durable, so
 * that the directory needs no fsync of its own. The ext4 driver does (with
 * a journal the link and the inode are one transaction; without one, the
 * fsync writes the directories that got a new entry), and so does XFS (one
 * log transaction). 0xEF53 is also ext2's magic, and ext2's own driver
 * writes no directory: the ext4 driver is recognised by its entry in
 * /sys/fs/ext4. Anything else gets the directory's fsync, as POSIX asks. */
static bool file_sync_covers_name(const char *dir)
{
	char sys[256], target[PATH_MAX];
	struct statfs sfs;
	struct stat st;
	const char *dev;
	ssize_t n;

	if (statfs(dir, &sfs) < 0 || stat(dir, &st) < 0)
		return false;
	if (sfs.f_type == XFS_SUPER_MAGIC)
		return true;
	if (sfs.f_type != EXT4_SUPER_MAGIC)
		return false;
	snprintf(sys, sizeof(sys), "/sys/dev/block/%u:%u", major(st.st_dev), minor(st.st_dev));
	n = readlink(sys, target, sizeof(target) - 1);
	if (n <= 0)
		return false;
	target[n] = '\0';
	dev = strrchr(target, '/');
	if (snprintf(sys, sizeof(sys), "/sys/fs/ext4/%.200s", dev != NULL ? dev + 1 : target) < 0)
		return false;
	return access(sys, F_OK) == 0;
}

/* The store's own directories, made durable when the store opens so that
 * a crash soon after its first start leaves nothing for fsck to repair. */
static int store_dir(const char *dir)
{
	return sora_blob_mkdirs_durable(dir, 0750) < 0 ? -1 : sora_blob_fsync_dir(dir);
}

int sora_blob_store_new(struct sora_blob_store_params *p, struct sora_blob_store **store_r,
			struct sora_error *err)
{
	struct sora_blob_store *s;
	char tmp[PATH_MAX];
	size_t len;

	*store_r = NULL;
	if (sodium_init() < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "libsodium initialisation failed");
		return -1;
	}
	if (p->driver == NULL) {
		sora_error_set(err, SORA_ERR_PERMANENT, "blob store: no driver");
		return -1;
	}
	if (p->staging_path == NULL || p->staging_path[0] == '\0') {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "blob store: [uploader] path (staging directory) is required");
		return -1;
	}
	if (p->encrypt && !sora_blob_keyring_can_encrypt(p->keyring)) {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "blob store: encryption is on but no encryption_key is set");
		return -1;
	}
	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		return -1;
	}
	s->lock_fd = -1;
	len = strlen(p->staging_path);
	while (len > 1 && p->staging_path[len - 1] == '/')
		len--;
	s->staging = strndup(p->staging_path, len);
	if (s->staging == NULL ||
	    sora_blob_path_join(tmp, sizeof(tmp), s->staging, STAGING_TMPDIR) < 0 ||
	    (s->staging_tmp = strdup(tmp)) == NULL ||
	    sora_blob_path_join(tmp, sizeof(tmp), s->staging, STAGING_ASIDEDIR) < 0 ||
	    (s->staging_aside = strdup(tmp)) == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto fail;
	}
	if (store_dir(s->staging_tmp) < 0 || store_dir(s->staging_aside) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "blob store: cannot create %s: %s",
			       s->staging_tmp, strerror(errno));
		goto fail;
	}
	/* Opening a staging directory clears the temp files of writers that
	 * died and restores set-aside bodies; a process still using the
	 * directory (two sora-backends started with one configuration, or a
	 * second store in tests) would lose in-flight writes to that. So
	 * every open store holds a shared flock on <staging>/.sora-lock, and
	 * only an opener that gets it exclusively -- nobody else has the
	 * directory open -- cleans up, then keeps it shared. */
	if (sora_blob_path_join(tmp, sizeof(tmp), s->staging, STAGING_LOCKFILE) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "blob store: staging path too long");
		goto fail;
	}
	s->lock_fd = open(tmp, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
	if (s->lock_fd < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "blob store: cannot open %s: %s", tmp,
			       strerror(errno));
		goto fail;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) == 0) {
		/* Temp files belong to writers of a previous run that never
		 * committed: those bodies were never acknowledged. */
		sora_blob_clean_dir(s->staging_tmp);
		/* Bodies the orphan sweep had set aside when the process
		 * stopped go back: the sweep decides again on its next pass. */
		if (restore_aside(s) < 0) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "blob store: cannot restore staged bodies from %s: %s",
				       s->staging_aside, strerror(errno));
			goto fail;
		}
	} else {
		sora_info(NULL, "blob store: staging directory %s is in use by another process; "
			  "leaving its temporary files alone", s->staging);
	}
	if (flock(s->lock_fd, LOCK_SH) < 0) {
		sora_error_set(err, SORA_ERR_PERMANENT, "blob store: cannot lock %s: %s", tmp,
			       strerror(errno));
		goto fail;
	}
	if (p->direct_root != NULL) {
		if (p->encrypt) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				       "blob store: a direct store cannot encrypt");
			goto fail;
		}
		if (sora_blob_path_join(tmp, sizeof(tmp), p->direct_root, SORA_BLOB_FS_TMPDIR) < 0 ||
		    (s->direct_root = strdup(p->direct_root)) == NULL ||
		    (s->direct_tmp = strdup(tmp)) == NULL) {
			sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
			goto fail;
		}
		if (store_dir(s->direct_tmp) < 0) {
			sora_error_set(err, SORA_ERR_PERMANENT, "blob store: cannot create %s: %s",
				       s->direct_tmp, strerror(errno));
			goto fail;
		}
	}
	s->anon_tmp = anon_tmp_works(s->direct_tmp != NULL ? s->direct_tmp : s->staging_tmp);
	s->names_sync = file_sync_covers_name(s->direct_tmp != NULL ? s->direct_tmp
								    : s->staging_tmp);
	if (p->cache_path != NULL && p->cache_path[0] != '\0' && p->cache_capacity > 0) {
		if (sora_blob_cache_open(p->cache_path, p->cache_capacity,
					 p->cache_max_object_size, &s->cache, err) < 0)
			goto fail;
	}
	s->driver = p->driver;
	s->keyring = p->keyring;
	s->encrypt = p->encrypt;
	*store_r = s;
	return 0;
fail:
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s->staging);
	free(s->staging_tmp);
	free(s->staging_aside);
	free(s->direct_root);
	free(s->direct_tmp);
	free(s);
	return -1;
}

int sora_blob_store_open(const struct sora_config *cfg,
			 const struct sora_blob_s3_options *s3opts,
			 struct sora_blob_store **store_r, struct sora_error *err)
{
	struct sora_blob_store_params p = { 0 };
	const struct sora_s3_config *s3 = &cfg->s3;
	const char *backend = cfg->storage.backend != NULL ? cfg->storage.backend : "fs";

	*store_r = NULL;
	if (strcmp(backend, "s3") == 0) {
		if (sora_blob_s3_create(s3, s3opts, &p.driver, err) < 0)
			return -1;
	} else if (strcmp(backend, "fs") == 0) {
		const char *root = cfg->storage.fs_path != NULL ? cfg->storage.fs_path : "var/blobs";
		if (sora_blob_fs_create(root, &p.driver, err) < 0)
			return -1;
	} else {
		sora_error_set(err, SORA_ERR_PERMANENT,
			       "[storage] backend must be \"fs\" or \"s3\", not \"%s\"", backend);
		return -1;
	}
	if (s3->encrypt || s3->old_encryption_keys_count > 0) {
		if (s3->encrypt && (s3->encryption_key == NULL || s3->encryption_key[0] == '\0')) {
			sora_error_set(err, SORA_ERR_PERMANENT,
				"[s3] encrypt = true needs encryption_key (64 hex characters)");
			goto fail;
		}
		if (sora_blob_keyring_new(s3->encrypt ? s3->encryption_key : NULL,
					  (const char *const *)s3->old_encryption_keys,
					  s3->old_encryption_keys_count, &p.keyring, err) < 0)
			goto fail;
	}
	p.encrypt = s3->encrypt;
	p.staging_path = cfg->uploader.path != NULL ? cfg->uploader.path : "var/staging";
	/* DESIGN.md §6: with fs the staged body becomes the stored body and
	 * there is no local cache, the store being local already. Encrypted
	 * fs stores hold ciphertext, so their bodies still pass through
	 * staging and the uploader's encryptor, but are not cached either. */
	if (strcmp(backend, "fs") == 0) {
		if (!p.encrypt)
			p.direct_root = cfg->storage.fs_path != NULL ? cfg->storage.fs_path
								     : "var/blobs";
		p.cache_path = NULL;
	} else {
		p.cache_path = cfg->local_cache.path;
	}
	p.cache_capacity = cfg->local_cache.capacity;
	p.cache_max_object_size = cfg->local_cache.max_object_size;
	if (sora_blob_store_new(&p, store_r, err) < 0)
		goto fail;
	if (p.encrypt) {
		char id[SORA_BLOB_CRYPT_KEY_ID_HEX_SIZE];
		sora_blob_keyring_current_id(p.keyring, id);
		sora_info(NULL, "blob store: %s driver, client-side encryption with key id %s "
			  "(%zu keys)", backend, id, sora_blob_keyring_count(p.keyring));
	}
	return 0;
fail:
	sora_blob_keyring_free(&p.keyring);
	sora_blob_driver_free(&p.driver);
	return -1;
}

void sora_blob_store_free(struct sora_blob_store **sp)
{
	struct sora_blob_store *s = *sp;

	if (s == NULL)
		return;
	sora_blob_driver_free(&s->driver);
	sora_blob_keyring_free(&s->keyring);
	sora_blob_cache_free(&s->cache);
	free(s->staging);
	free(s->staging_tmp);
	free(s->staging_aside);
	free(s->direct_root);
	free(s->direct_tmp);
	if (s->lock_fd >= 0)
		close(s->lock_fd);
	free(s);
	*sp = NULL;
}

struct sora_blob_driver *sora_blob_store_driver(struct sora_blob_store *s)
{
	return s->driver;
}

struct sora_blob_cache *sora_blob_store_cache(struct sora_blob_store *s)
{
	return s->cache;
}

bool sora_blob_store_encrypts(const struct sora_blob_store *s)
{
	return s->encrypt;
}

bool sora_blob_store_direct(const struct sora_blob_store *s)
{
	return s->direct_root != NULL;
}

/* ---- paths ---- */

static int staged_path(struct sora_blob_store *s, int64_t account_id, const char *hash,
		       char *dst, size_t size, struct sora_error *err)
{
	int n;

	if (account_id <= 0 || hash == NULL || !sora_blob_hash_valid(sora_str_c(hash))) {
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "invalid body reference (account %lld)",
				      (long long)account_id);
	}
	n = snprintf(dst, size, "%s/%lld/%s", s->staging, (long long)account_id, hash);
	if (n < 0 || (size_t)n >= size)
		return sora_error_set(err, SORA_ERR_PERMANENT, "staging path too long");
	return 0;
}

static int object_key(int64_t account_id, const char *hash, char key[SORA_BLOB_KEY_SIZE],
		      struct sora_error *err)
{
	if (sora_blob_key_format(account_id, hash, key, SORA_BLOB_KEY_SIZE) < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT,
				      "invalid body reference (account %lld)",
				      (long long)account_id);
	return 0;
}

/* Where a direct store keeps a body: <root>/<key>, as the fs driver. */
static int direct_path(struct sora_blob_store *s, int64_t account_id, const char *hash,
		       char *dst, size_t size, struct sora_error *err)
{
	char key[SORA_BLOB_KEY_SIZE];

	if (object_key(account_id, hash, key, err) < 0)
		return -1;
	if (sora_blob_path_join(dst, size, s->direct_root, key) < 0)
		return sora_error_set(err, SORA_ERR_PERMANENT, "store path too long");
	return 0;
}

/* ---- staging ---- */

/* Bodies of DIO_MIN bytes or more in the direct store are written with
 * O_DIRECT from the writer's aligned buffer (one write per DIO_BUF), except
 * for the last partial block. A body is written once and read rarely, and
 * what IMAP and POP3 read most often (envelope, structure, headers, sizes)
 * comes from the database, so keeping the body in the page cache buys
 * little, while writing through it takes a fresh page-cache page per 4 KiB
 * and a copy into it. On virtual machines whose host hands out guest
 * memory on first touch, that is most of the cost of the write: on the
 * project's 2-core VM a 100 KiB body written and fsynced took 110-150 us
 * of CPU with O_DIRECT against 320-370 us through the page cache
 * (docs/lmtp.md). Smaller bodies gain nothing measurable and are written
 * through the page cache in one write. Staged bodies (S3) keep the page
 * cache: the uploader reads them back within seconds. A file system that
 * refuses O_DIRECT (tmpfs before Linux 6.6, some FUSE file systems) gets
 * buffered writes. 4096 covers the logical block size of every common
 * device. */
#define DIO_ALIGN 4096
#define DIO_MIN (64 * 1024)
#define DIO_BUF (128 * 1024)   /* a message held in memory, in one write */

struct sora_blob_writer {
	struct sora_blob_hasher hasher;   /* first: 64-byte aligned */
	struct sora_blob_store *store;
	int64_t account_id;
	uint64_t max_size;
	int fd;
	bool failed;
	bool dio_on;                      /* fd has O_DIRECT */
	unsigned char *dio;               /* the buffer (DIO_BUF bytes) or NULL */
	size_t dio_len;
	char tmp[PATH_MAX];
};

/* Where the writer's file is (it may have no name yet). */
static const char *writer_dir(const struct sora_blob_writer *w)
{
	return w->store->direct_tmp != NULL ? w->store->direct_tmp : w->store->staging_tmp;
}

static void dio_refused(struct sora_blob_writer *w)
{
	if (!__atomic_exchange_n(&w->store->no_dio, true, __ATOMIC_RELAXED))
		sora_notice(NULL, "blob store: %s refuses O_DIRECT (%s); bodies are written "
			    "through the page cache", w->store->direct_root, strerror(errno));
}

static int set_direct(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	return fcntl(fd, F_SETFL, on ? fl | O_DIRECT : fl & ~O_DIRECT);
}

/* Writes what the buffer holds through the page cache and drops the
 * buffer: the rest of the file goes the same way. */
static int dio_drop(struct sora_blob_writer *w)
{
	int ret = 0;

	if ((w->dio_on && set_direct(w->fd, false) < 0) ||
	    sora_blob_write_all(w->fd, w->dio, w->dio_len) < 0)
		ret = -1;
	free(w->dio);
	w->dio = NULL;
	w->dio_len = 0;
	w->dio_on = false;
	return ret;
}

/* Writes the buffer's whole blocks with O_DIRECT and moves the rest (less
 * than a block) to the buffer's start. A refused or short write finishes
 * the file buffered. */
static int dio_flush_blocks(struct sora_blob_writer *w)
{
	size_t n = w->dio_len & ~(size_t)(DIO_ALIGN - 1);
	ssize_t r;

	if (!w->dio_on) {
		if (set_direct(w->fd, true) < 0) {
			if (errno != EINVAL)
				return -1;
			dio_refused(w);
			return dio_drop(w);
		}
		w->dio_on = true;
	}
	do
		r = write(w->fd, w->dio, n);
	while (r < 0 && errno == EINTR);
	if (r < 0 && errno != EINVAL)
		return -1;
	if (r != (ssize_t)n) {
		/* EINVAL: a device with blocks over DIO_ALIGN, or a write cut
		 * short by the file size limit. This file goes on buffered;
		 * the next tries again. */
		if (r > 0) {
			w->dio_len -= (size_t)r;
			memmove(w->dio, w->dio + r, w->dio_len);
		}
		return dio_drop(w);
	}
	w->dio_len -= n;
	memmove(w->dio, w->dio + n, w->dio_len);
	return 0;
}

static int writer_put(struct sora_blob_writer *w, const unsigned char *data, size_t len)
{
	while (w->dio != NULL && len > 0) {
		size_t n = DIO_BUF - w->dio_len;

		if (n > len)
			n = len;
		memcpy(w->dio + w->dio_len, data, n);
		w->dio_len += n;
		data += n;
		len -= n;
		if (w->dio_len == DIO_BUF && dio_flush_blocks(w) < 0)
			return -1;
	}
	return len > 0 ? sora_blob_write_all(w->fd, data, len) : 0;
}

/* Before the flush: whatever the buffer still holds. */
static int writer_finish(struct sora_blob_writer *w)
{
	if (w->dio == NULL)
		return 0;
	if ((w->dio_on || w->dio_len >= DIO_MIN) && dio_flush_blocks(w) < 0)
		return -1;
	return w->dio != NULL ? dio_drop(w) : 0;
}

int sora_blob_writer_new(struct sora_blob_store *s, int64_t account_id, uint64_t max_size,
			 struct sora_blob_writer **w_r, struct sora_error *err)
{
	struct sora_blob_writer *w;

	*w_r = NULL;
	if (account_id <= 0)
		return sora_error_set(err, SORA_ERR_PERMANENT, "invalid account id %lld",
				      (long long)account_id);
	w = alloc_aligned(sizeof(*w));
	if (w == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	/* A direct store's temp directory is inside the store, so the final
	 * link or rename never crosses file systems. */
	w->store = s;
	w->fd = -1;
	if (s->anon_tmp) {
		w->fd = anon_tmpfile(writer_dir(w));
		w->tmp[0] = '\0';
	}
	if (w->fd < 0)
		w->fd = sora_blob_tmpfile(writer_dir(w), w->tmp, sizeof(w->tmp));
	if (w->fd < 0) {
		sora_error_set(err, sora_error_class_errno(errno), "staging: temp file in %s: %s",
			       writer_dir(w), strerror(errno));
		free(w);
		return -1;
	}
	w->account_id = account_id;
	w->max_size = max_size;
	sora_blob_hash_init(&w->hasher);
	if (s->direct_root != NULL && !__atomic_load_n(&s->no_dio, __ATOMIC_RELAXED))
		w->dio = aligned_alloc(DIO_ALIGN, DIO_BUF);   /* NULL: buffered */
	*w_r = w;
	return 0;
}

int sora_blob_writer_write(struct sora_blob_writer *w, const void *data, size_t len,
			   struct sora_error *err)
{
	if (w->failed)
		return sora_error_set(err, SORA_ERR_PERMANENT, "staging: writer already failed");
	if (w->max_size != 0 && len > w->max_size - w->hasher.size) {
		w->failed = true;
		return sora_error_set(err, SORA_ERR_LIMIT, "body exceeds %llu bytes",
				      (unsigned long long)w->max_size);
	}
	if (writer_put(w, data, len) < 0) {
		w->failed = true;
		return sora_error_set(err, sora_error_class_errno(errno), "staging: write in %s: %s",
				      writer_dir(w), strerror(errno));
	}
	sora_blob_hash_update(&w->hasher, data, len);
	return 0;
}

void sora_blob_writer_abort(struct sora_blob_writer **wp)
{
	struct sora_blob_writer *w;

	if (wp == NULL || *wp == NULL)
		return;
	w = *wp;
	if (w->fd >= 0)
		close(w->fd);
	if (w->tmp[0] != '\0')
		unlink(w->tmp);
	free(w->dio);
	free(w);
	*wp = NULL;
}

/* ---- holds (see blob-store.h, "Shared bodies") ---- */

struct sora_blob_hold {
	struct sora_blob_store *store;
	int64_t account_id;
	char hash[SORA_BLOB_HASH_HEX_SIZE];
	int fd;                    /* the body's inode, flock(LOCK_SH) held */
	struct timespec stamp;     /* its mtime as this hold last set it */
};

/* Where a body lives until it is uploaded: staging, or the direct store. */
static int body_path(struct sora_blob_store *s, int64_t account_id, const char *hash,
		     char *dst, size_t size, struct sora_error *err)
{
	if (s->direct_root != NULL)
		return direct_path(s, account_id, hash, dst, size, err);
	return staged_path(s, account_id, hash, dst, size, err);
}

/* The temp directory on the same file system as body_path(). */
static const char *body_tmpdir(struct sora_blob_store *s)
{
	return s->direct_tmp != NULL ? s->direct_tmp : s->staging_tmp;
}

/* Sets the file's mtime to a value no other stamp of this process has
 * (the clock's microseconds plus a counter in the nanoseconds) and records
 * it as the file system stored it. A hold that finds a different mtime
 * later knows that another hold used the body meanwhile. The mtime is also
 * what the orphan sweep reads as "last written or reused". */
static int hold_stamp(struct sora_blob_hold *h)
{
	static unsigned int seq;
	struct timespec times[2];
	struct stat st;

	clock_gettime(CLOCK_REALTIME, &times[1]);
	times[1].tv_nsec = times[1].tv_nsec / 1000 * 1000 +
			   (long)(__atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED) % 1000);
	times[0].tv_sec = 0;
	times[0].tv_nsec = UTIME_OMIT;
	if (futimens(h->fd, times) < 0 || fstat(h->fd, &st) < 0)
		return -1;
	h->stamp = st.st_mtim;
	return 0;
}

/* True when fd is still the file at path. */
static bool same_file(int fd, const char *path, struct stat *st_r)
{
	struct stat pst;

	return fstat(fd, st_r) == 0 && st_r->st_nlink > 0 && stat(path, &pst) == 0 &&
	       pst.st_dev == st_r->st_dev && pst.st_ino == st_r->st_ino;
}

static int flock_retry(int fd, int op)
{
	int rc;

	do
		rc = flock(fd, op);
	while (rc < 0 && errno == EINTR);
	return rc;
}

/* Gives the writer's file the name path unless path exists (EEXIST then).
 * An unnamed file (O_TMPFILE, tmp is "") is linked: linkat never replaces.
 * A named one is renamed without replacing, which takes the temporary name
 * away in the same step (tmp becomes ""): one directory operation where
 * link and unlink take two. A file system without RENAME_NOREPLACE gets a
 * link, and tmp stays for the caller's clean-up to remove. */
static int place_noreplace(struct sora_blob_writer *w, const char *path)
{
	if (w->tmp[0] == '\0')
		return anon_link(w->fd, path);
	if (renameat2(AT_FDCWD, w->tmp, AT_FDCWD, path, RENAME_NOREPLACE) == 0) {
		w->tmp[0] = '\0';
		return 0;
	}
	if (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)
		return -1;
	return link(w->tmp, path);
}

/* Gives a writer's unnamed file a temp name (to rename it over a damaged
 * copy: linkat cannot replace). */
static int name_anon(struct sora_blob_writer *w)
{
	static unsigned seq;
	const char *dir = writer_dir(w);

	if (w->tmp[0] != '\0')
		return 0;
	for (int i = 0; i < 100; i++) {
		int n = snprintf(w->tmp, sizeof(w->tmp), "%s/tmp.%ld.%u", dir, (long)getpid(),
				 __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));

		if (n < 0 || (size_t)n >= sizeof(w->tmp))
			break;
		if (anon_link(w->fd, w->tmp) == 0)
			return 0;
		if (errno != EEXIST)
			break;
	}
	w->tmp[0] = '\0';
	return -1;
}

/* Makes the body at path durable under that name, after a writer placed
 * it or a writer found it in place (whose writer may not have got this far
 * yet). A writer's unnamed file was fsynced while its link count was still
 * 0, and linkat raises it only in memory: without another fsync of the
 * file, a crash leaves the name pointing at an inode the disk shows as
 * free, and e2fsck removes the entry (ext4 without a journal,
 * docs/storage.md). */
static int sync_placed(struct sora_blob_store *s, int fd, const char *path)
{
	if (fsync(fd) < 0)
		return -1;
	return s->names_sync ? 0 : sora_blob_fsync_parent(path);
}

/* A writer that gave up puts the hash into this many more attempts before
 * it fails: each retry means a concurrent discard removed the body that
 * was found in place, and the next attempt writes it itself. */
#define HOLD_ATTEMPTS 8

int sora_blob_writer_commit_held(struct sora_blob_writer **wp, struct sora_blob_ref *ref_r,
				 struct sora_blob_hold **hold_r, struct sora_error *err)
{
	struct sora_blob_writer *w = *wp;
	struct sora_blob_store *s = w->store;
	struct sora_blob_hold *h = NULL;
	char path[PATH_MAX];
	bool synced = false;
	int ret = -1;

	*hold_r = NULL;
	if (w->failed) {
		sora_error_set(err, SORA_ERR_PERMANENT, "staging: writer already failed");
		goto out;
	}
	if (writer_finish(w) < 0) {
		sora_error_set(err, sora_error_class_errno(errno), "staging: write in %s: %s",
			       writer_dir(w), strerror(errno));
		goto out;
	}
	ref_r->size = w->hasher.size;
	ref_r->existed = false;
	sora_blob_hash_final(&w->hasher, ref_r->hash);
	if (body_path(s, w->account_id, ref_r->hash, path, sizeof(path), err) < 0)
		goto out;
	h = calloc(1, sizeof(*h));
	if (h == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	h->store = s;
	h->account_id = w->account_id;
	memcpy(h->hash, ref_r->hash, sizeof(h->hash));
	h->fd = -1;
	for (int attempt = 0; attempt < HOLD_ATTEMPTS; attempt++) {
		struct stat st;
		int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);

		if (fd >= 0) {
			/* Same hash, same bytes: a copy in place is complete (it
			 * got there by link) and need not be written again. The
			 * shared lock waits for a discard that is deciding about
			 * it; if the discard removed it, the file is no longer at
			 * path and this attempt starts over. */
			if (flock_retry(fd, LOCK_SH) == 0 && same_file(fd, path, &st)) {
				if (S_ISREG(st.st_mode) && (uint64_t)st.st_size == ref_r->size) {
					h->fd = fd;
					ref_r->existed = true;
					if (sync_placed(s, fd, path) < 0)
						goto io_error;
					break;
				}
				/* A damaged copy (wrong size for its hash): replaced
				 * below by this one, as a rename over it. */
				close(fd);
				if (!synced && fsync(w->fd) < 0)
					goto io_error;
				synced = true;
				if (flock_retry(w->fd, LOCK_SH) < 0 || name_anon(w) < 0 ||
				    rename(w->tmp, path) < 0)
					goto io_error;
				w->tmp[0] = '\0';
				goto placed;
			}
			close(fd);
			continue;
		}
		if (errno != ENOENT)
			goto io_error;
		/* Not there: this writer's file becomes the body. It is locked
		 * before anyone can see it, and linked without replacing
		 * anything: a body another writer put in place meanwhile is
		 * taken as found above. */
		if (!synced) {
			if (fsync(w->fd) < 0 || sora_blob_mkdirs_parent_durable(path, 0750) < 0)
				goto io_error;
			synced = true;
		}
		if (flock_retry(w->fd, LOCK_SH) < 0)
			goto io_error;
		if (place_noreplace(w, path) < 0) {
			if (errno == EEXIST)
				continue;
			goto io_error;
		}
placed:
		h->fd = w->fd;
		w->fd = -1;
		if (sync_placed(s, h->fd, path) < 0)
			goto io_error;
		break;
	}
	if (h->fd < 0) {
		sora_error_set(err, SORA_ERR_TEMPORARY,
			       "staging %s: removed again on each of %d attempts", path,
			       HOLD_ATTEMPTS);
		goto out;
	}
	if (hold_stamp(h) < 0)
		goto io_error;
	*hold_r = h;
	h = NULL;
	ret = 0;
	goto out;
io_error:
	sora_error_set(err, sora_error_class_errno(errno), "staging %s: %s", path,
		       strerror(errno));
out:
	if (h != NULL) {
		/* A body this writer linked into place stays: another hold
		 * may have found it already. The orphan sweep (staging) or a
		 * later discard decides about it. */
		if (h->fd >= 0)
			close(h->fd);
		free(h);
	}
	if (w->fd >= 0)
		close(w->fd);
	w->fd = -1;
	if (w->tmp[0] != '\0')
		unlink(w->tmp);
	free(w->dio);
	free(w);
	*wp = NULL;
	return ret;
}

void sora_blob_hold_release(struct sora_blob_hold **hp)
{
	struct sora_blob_hold *h;

	if (hp == NULL || *hp == NULL)
		return;
	h = *hp;
	/* A new stamp: a discard by a hold taken before this release sees
	 * that the body was used meanwhile, and keeps it. That covers an
	 * outcome the caller does not know (a commit that may still land
	 * after this release), which no database check could see yet. */
	(void)hold_stamp(h);
	close(h->fd);
	free(h);
	*hp = NULL;
}

int sora_blob_hold_discard(struct sora_blob_hold **hp, sora_blob_unreferenced_cb *cb,
			   void *ctx, struct sora_error *err)
{
	struct sora_blob_hold *h = *hp;
	struct sora_blob_store *s = h->store;
	char path[PATH_MAX], tmp[PATH_MAX];
	struct stat st, ast;
	int ret = 0, n;

	*hp = NULL;
	if (body_path(s, h->account_id, h->hash, path, sizeof(path), err) < 0) {
		ret = -1;
		goto out;
	}
	/* Exclusive: no other hold is on the body now, and none can start
	 * until this one is done. If another hold has it, that hold decides
	 * when it ends. (A failed conversion leaves no lock at all, so of
	 * two holds discarding at once the later one wins the lock.) */
	if (flock(h->fd, LOCK_EX | LOCK_NB) < 0 || !same_file(h->fd, path, &st))
		goto out;
	/* Another hold used the body since this one stamped it (and has
	 * released it: it would still hold its lock otherwise). */
	if (st.st_mtim.tv_sec != h->stamp.tv_sec || st.st_mtim.tv_nsec != h->stamp.tv_nsec)
		goto out;
	/* No row may refer to it: a hold that committed and ended before
	 * this one stamped leaves nothing here but its row. */
	if (cb == NULL || cb(ctx, h->account_id, h->hash) != 1)
		goto out;
	/* Out of the way first, then make sure it was this inode: anything
	 * else that moved into its place stays. A crash in between leaves it
	 * in the temp directory, which is emptied at start-up. */
	n = snprintf(tmp, sizeof(tmp), "%s/discard.%lld.%s", body_tmpdir(s),
		     (long long)h->account_id, h->hash);
	if (n < 0 || (size_t)n >= sizeof(tmp)) {
		ret = sora_error_set(err, SORA_ERR_PERMANENT, "staging path too long");
		goto out;
	}
	if (rename(path, tmp) < 0) {
		if (errno != ENOENT)
			ret = sora_error_set(err, sora_error_class_errno(errno),
					     "staging: rename %s: %s", path, strerror(errno));
		goto out;
	}
	if (stat(tmp, &ast) == 0 && (ast.st_dev != st.st_dev || ast.st_ino != st.st_ino)) {
		if (link(tmp, path) < 0 && errno != EEXIST)
			ret = sora_error_set(err, SORA_ERR_PERMANENT,
					     "staging: cannot restore %s: %s (kept as %s)", path,
					     strerror(errno), tmp);
		else
			unlink(tmp);
		goto out;
	}
	unlink(tmp);
	ret = 1;
out:
	close(h->fd);
	free(h);
	return ret;
}

int sora_blob_writer_commit(struct sora_blob_writer **wp, struct sora_blob_ref *ref_r,
			    struct sora_error *err)
{
	struct sora_blob_hold *h = NULL;
	int ret = sora_blob_writer_commit_held(wp, ref_r, &h, err);

	sora_blob_hold_release(&h);
	return ret;
}

int sora_blob_stage_buf(struct sora_blob_store *s, int64_t account_id, const void *data,
			size_t len, struct sora_blob_ref *ref_r, struct sora_error *err)
{
	struct sora_blob_writer *w;
	int ret;

	ret = sora_blob_writer_new(s, account_id, 0, &w, err);
	if (ret < 0)
		return ret;
	ret = sora_blob_writer_write(w, data, len, err);
	if (ret < 0) {
		sora_blob_writer_abort(&w);
		return ret;
	}
	return sora_blob_writer_commit(&w, ref_r, err);
}

int sora_blob_stage_fd(struct sora_blob_store *s, int64_t account_id, int fd,
		       uint64_t max_size, struct sora_blob_ref *ref_r,
		       struct sora_error *err)
{
	struct sora_blob_writer *w;
	char *buf;
	int ret;

	buf = malloc(IO_CHUNK);
	if (buf == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	ret = sora_blob_writer_new(s, account_id, max_size, &w, err);
	if (ret < 0) {
		free(buf);
		return ret;
	}
	for (;;) {
		ssize_t n = read(fd, buf, IO_CHUNK);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = sora_error_set(err, sora_error_class_errno(errno),
					     "staging: read: %s", strerror(errno));
			break;
		}
		if (n == 0)
			break;
		ret = sora_blob_writer_write(w, buf, (size_t)n, err);
		if (ret < 0)
			break;
	}
	free(buf);
	if (ret < 0) {
		sora_blob_writer_abort(&w);
		return ret;
	}
	return sora_blob_writer_commit(&w, ref_r, err);
}

bool sora_blob_is_staged(struct sora_blob_store *s, int64_t account_id, const char *hash)
{
	char path[PATH_MAX];

	return staged_path(s, account_id, hash, path, sizeof(path), NULL) == 0 &&
	       access(path, F_OK) == 0;
}

int sora_blob_unstage(struct sora_blob_store *s, int64_t account_id, const char *hash,
		      struct sora_error *err)
{
	char path[PATH_MAX];

	if (staged_path(s, account_id, hash, path, sizeof(path), err) < 0)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return sora_error_set(err, sora_error_class_errno(errno), "staging: unlink %s: %s",
				      path, strerror(errno));
	return 0;
}

int sora_blob_discard(struct sora_blob_store *s, int64_t account_id, const char *hash,
		      struct sora_error *err)
{
	char path[PATH_MAX];

	if (s->direct_root == NULL)
		return sora_blob_unstage(s, account_id, hash, err);
	if (direct_path(s, account_id, hash, path, sizeof(path), err) < 0)
		return -1;
	if (unlink(path) < 0 && errno != ENOENT)
		return sora_error_set(err, sora_error_class_errno(errno), "store: unlink %s: %s",
				      path, strerror(errno));
	return 0;
}

/* ---- staging housekeeping ---- */

static bool older_than(const struct stat *st, int64_t min_age)
{
	return (int64_t)time(NULL) - (int64_t)st->st_mtime > min_age;
}

int sora_blob_staged_walk(struct sora_blob_store *s, int64_t min_age, sora_blob_staged_cb *cb,
			  void *ctx)
{
	DIR *top = opendir(s->staging);
	struct dirent *ad;
	int seen = 0;

	if (top == NULL)
		return -1;
	while ((ad = readdir(top)) != NULL) {
		uint64_t account = 0;
		struct dirent *fd;
		DIR *acc;
		int dfd;

		/* Account directories only; tmp/ holds unfinished writes. */
		if (sora_str_to_u64(sora_str_c(ad->d_name), INT64_MAX, &account) < 0 || account == 0)
			continue;
		dfd = openat(dirfd(top), ad->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0 || (acc = fdopendir(dfd)) == NULL) {
			if (dfd >= 0)
				close(dfd);
			continue;
		}
		while ((fd = readdir(acc)) != NULL) {
			struct stat st;

			if (!sora_blob_hash_valid(sora_str_c(fd->d_name)) ||
			    fstatat(dirfd(acc), fd->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
			    !S_ISREG(st.st_mode) || !older_than(&st, min_age))
				continue;
			seen++;
			if (cb(ctx, (int64_t)account, fd->d_name) < 0) {
				closedir(acc);
				closedir(top);
				return seen;
			}
		}
		closedir(acc);
	}
	closedir(top);
	return seen;
}

static int unstage_orphan_locked(const char *path, const char *aside, int64_t min_age,
				 struct sora_error *err);

int sora_blob_unstage_orphan(struct sora_blob_store *s, int64_t account_id, const char *hash,
			     int64_t min_age, struct sora_error *err)
{
	char path[PATH_MAX], aside[PATH_MAX];
	int n, lfd, ret;

	if (staged_path(s, account_id, hash, path, sizeof(path), err) < 0)
		return -1;
	n = snprintf(aside, sizeof(aside), "%s/%lld.%s", s->staging_aside, (long long)account_id,
		     hash);
	if (n < 0 || (size_t)n >= sizeof(aside))
		return sora_error_set(err, SORA_ERR_PERMANENT, "staging path too long");
	/* A body some hold is on (a delivery or APPEND between staging and
	 * its commit, see "Shared bodies" in blob-store.h) is in use, however
	 * old its mtime. The exclusive lock also keeps new holds out until the
	 * decision is made; they find the file gone and write their own. */
	lfd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (lfd < 0)
		return errno == ENOENT ? 0 : sora_error_set(err, sora_error_class_errno(errno),
							     "staging: open %s: %s", path,
							     strerror(errno));
	if (flock(lfd, LOCK_EX | LOCK_NB) < 0) {
		close(lfd);
		return 1;
	}
	ret = unstage_orphan_locked(path, aside, min_age, err);
	close(lfd);
	return ret;
}

static int unstage_orphan_locked(const char *path, const char *aside, int64_t min_age,
				 struct sora_error *err)
{
	struct stat st;

	/* Out of the way first, then look: a hold released after the lock
	 * above was taken cannot exist, but one released just before it
	 * stamped the file (see sora_blob_writer_commit_held), and that shows
	 * in the mtime below. */
	if (rename(path, aside) < 0) {
		if (errno == ENOENT)
			return 0;
		return sora_error_set(err, sora_error_class_errno(errno), "staging: rename %s: %s",
				      path, strerror(errno));
	}
	if (stat(aside, &st) == 0 && !older_than(&st, min_age)) {
		/* In use again: put it back. A delivery that found it gone
		 * meanwhile staged the same bytes itself; either copy will do. */
		if (link(aside, path) < 0 && errno != EEXIST)
			return sora_error_set(err, SORA_ERR_PERMANENT,
					      "staging: cannot restore %s: %s (kept as %s)", path,
					      strerror(errno), aside);
		unlink(aside);
		return 1;
	}
	if (unlink(aside) < 0 && errno != ENOENT)
		return sora_error_set(err, sora_error_class_errno(errno), "staging: unlink %s: %s",
				      aside, strerror(errno));
	return 0;
}

/* ---- upload ---- */

/* A source over a staged file that checks, as the last byte is read, that
 * the content still hashes to the name it was staged under. A mismatch
 * fails the read, so a damaged body never completes an upload. */
struct verify_source {
	struct sora_blob_hasher hasher;   /* first: 64-byte aligned */
	struct sora_blob_fd_source fd;
	struct sora_blob_source inner;
	const char *expect;
	bool mismatch;
};

static ssize_t verify_read(void *ctx, void *buf, size_t len, struct sora_error *err)
{
	struct verify_source *v = ctx;
	ssize_t n = v->inner.read(v->inner.ctx, buf, len, err);
	char got[SORA_BLOB_HASH_HEX_SIZE];

	if (n <= 0)
		return n;
	sora_blob_hash_update(&v->hasher, buf, (size_t)n);
	if (v->hasher.size == v->inner.length) {
		sora_blob_hash_final(&v->hasher, got);
		/* Keep the hasher usable if libcurl reads on after the end. */
		sora_blob_hash_init(&v->hasher);
		v->hasher.size = v->inner.length;
		if (strcmp(got, v->expect) != 0) {
			v->mismatch = true;
			return sora_error_set(err, SORA_ERR_CORRUPT,
				"staged body does not match its hash (content hashes to %s)", got);
		}
	}
	return n;
}

static int verify_rewind(void *ctx, struct sora_error *err)
{
	struct verify_source *v = ctx;

	sora_blob_hash_init(&v->hasher);
	v->mismatch = false;
	return v->inner.rewind(v->inner.ctx, err);
}


int sora_blob_upload_staged(struct sora_blob_store *s, int64_t account_id, const char *hash,
			    struct sora_error *err)
{
	char path[PATH_MAX], key[SORA_BLOB_KEY_SIZE];
	struct sora_blob_encryptor *enc = NULL;
	struct sora_blob_source src, enc_src;
	struct verify_source *v = NULL;
	struct sora_error local;
	struct stat st;
	int fd = -1, ret = -1;

	if (err == NULL)
		err = &local;
	if (staged_path(s, account_id, hash, path, sizeof(path), err) < 0 ||
	    object_key(account_id, hash, key, err) < 0)
		return -1;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int e = errno;
		return sora_error_set(err,
				      e == ENOENT ? SORA_ERR_NOT_FOUND : sora_error_class_errno(e),
				      "upload %s: staged body %s: %s", key, path, strerror(e));
	}
	if (fstat(fd, &st) < 0) {
		sora_error_set(err, sora_error_class_errno(errno), "upload %s: %s", key,
			       strerror(errno));
		goto out;
	}
	v = alloc_aligned(sizeof(*v));
	if (v == NULL) {
		sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
		goto out;
	}
	v->expect = hash;
	sora_blob_hash_init(&v->hasher);
	sora_blob_fd_source_init(&v->inner, &v->fd, fd, 0, (uint64_t)st.st_size);
	src.length = (uint64_t)st.st_size;
	src.read = verify_read;
	src.rewind = verify_rewind;
	src.ctx = v;
	if (s->encrypt) {
		ret = sora_blob_encryptor_new(s->keyring, &src, &enc_src, &enc, err);
		if (ret < 0)
			goto out;
		ret = sora_blob_driver_put(s->driver, key, &enc_src, err);
	} else {
		/* A driver that can take the file as it is (fs on the same file
		 * system) gets it after the same hash check, without a copy. */
		ret = sora_blob_source_drain(&src, NULL, NULL, err);
		if (ret == 0)
			ret = sora_blob_driver_link_file(s->driver, key, path, fd, err);
		if (ret < 0 && err->cls == SORA_ERR_UNSUPPORTED)
			ret = sora_blob_driver_put(s->driver, key, &src, err);
	}
	if (ret < 0) {
		if (v->mismatch) {
			/* The staged file is left for an operator to look at. */
			err->cls = SORA_ERR_CORRUPT;
			sora_error(NULL, "upload %s: %s", key, err->msg);
		}
		goto out;
	}
	/* Stored: the staged copy becomes a cache entry (or goes away). */
	if (s->cache != NULL && (uint64_t)st.st_size <= sora_blob_cache_max_object_size(s->cache)) {
		struct sora_error cerr;

		if (sora_blob_cache_add_file(s->cache, key, path, 1, &cerr) < 0)
			sora_warn(NULL, "upload %s: not cached: %s", key, cerr.msg);
	} else if (unlink(path) < 0 && errno != ENOENT) {
		sora_warn(NULL, "upload %s: cannot remove staged %s: %s", key, path, strerror(errno));
	}
	ret = 0;
out:
	sora_blob_encryptor_free(&enc);
	free(v);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* ---- reading ---- */

/* Passes plaintext bytes [skip, skip+want) of a stream to the caller,
 * hashing the whole stream when it is read in full. */
struct read_ctx {
	struct sora_blob_hasher hasher;   /* first: 64-byte aligned */
	bool hash_it;
	uint64_t skip;
	uint64_t want;                    /* SORA_BLOB_TO_END: all */
	uint64_t seen;
	sora_blob_write_cb *cb;
	void *cb_ctx;
	struct sora_blob_cache_writer *cw;  /* filling the cache instead */
	struct sora_blob_decryptor *dec;
	int dec_status;                     /* first decryptor failure: -1 */
	struct sora_error dec_err;
};

static int clip_write(void *ctx, const void *data, size_t len)
{
	struct read_ctx *r = ctx;
	const char *p = data;

	r->seen += len;
	if (r->hash_it)
		sora_blob_hash_update(&r->hasher, data, len);
	if (r->cw != NULL) {
		if (sora_blob_cache_writer_write(r->cw, data, len) < 0)
			sora_blob_cache_writer_abort(&r->cw);
		return 0;
	}
	if (r->cb == NULL)
		return 0;
	if (r->skip > 0) {
		size_t m = r->skip < len ? (size_t)r->skip : len;
		p += m;
		len -= m;
		r->skip -= m;
	}
	if (r->want != SORA_BLOB_TO_END && len > r->want)
		len = (size_t)r->want;
	if (len == 0)
		return 0;
	if (r->want != SORA_BLOB_TO_END)
		r->want -= len;
	return r->cb(r->cb_ctx, p, len);
}

static int feed_decryptor(void *ctx, const void *data, size_t len)
{
	struct read_ctx *r = ctx;

	/* The decryptor's verdict is kept for after the transfer. */
	r->dec_status = sora_blob_decryptor_feed(r->dec, data, len, &r->dec_err);
	return r->dec_status < 0 ? -1 : 0;
}

/* Serves a range of a local plaintext file. */
static int read_local(int fd, uint64_t size, uint64_t offset, uint64_t length,
		      sora_blob_write_cb *cb, void *cb_ctx, const char *key,
		      struct sora_error *err)
{
	int ret = sora_blob_send_range(fd, size, offset, length, cb, cb_ctx, err);

	close(fd);
	if (ret < 0 && !sora_error_is(err, SORA_ERR_ABORTED))
		sora_error_prefix(err, "object %s", key);
	return ret;
}

/* Fetches ciphertext [0, fetch_len) of key through a decryptor into r.
 * whole: fetch_len covers the object, so the final chunk must be seen. */
static int fetch_plain(struct sora_blob_store *s, const char *key, uint64_t fetch_len,
		       bool whole, struct read_ctx *r, struct sora_error *err)
{
	int ret;

	ret = sora_blob_decryptor_new(s->keyring, key, true, clip_write, r, &r->dec);
	if (ret < 0)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	r->dec_status = 0;
	ret = sora_blob_driver_get(s->driver, key, 0, fetch_len, feed_decryptor, r, err);
	if (ret < 0 && sora_error_is(err, SORA_ERR_ABORTED) && r->dec_status < 0) {
		/* The decryptor stopped the transfer: bad data (CORRUPT) or the
		 * caller's sink (ABORTED); its error says which. */
		*err = r->dec_err;
	} else if (ret == 0 && whole) {
		ret = sora_blob_decryptor_finish(r->dec, err);
	}
	sora_blob_decryptor_free(&r->dec);
	return ret;
}

int sora_blob_read(struct sora_blob_store *s, int64_t account_id, const char *hash,
		   uint64_t offset, uint64_t length, sora_blob_write_cb *cb, void *cb_ctx,
		   struct sora_error *err)
{
	char key[SORA_BLOB_KEY_SIZE], path[PATH_MAX];
	struct read_ctx *r = NULL;
	uint64_t size, plain_size, fetch;
	struct sora_error local;
	bool whole;
	int fd, ret;

	if (err == NULL)
		err = &local;
	if (object_key(account_id, hash, key, err) < 0 ||
	    staged_path(s, account_id, hash, path, sizeof(path), err) < 0)
		return -1;

	/* 1. The local cache. */
	if (s->cache != NULL && (fd = sora_blob_cache_open_read(s->cache, key, &size)) >= 0)
		return read_local(fd, size, offset, length, cb, cb_ctx, key, err);
	/* 2. Staging: not uploaded yet. */
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		struct stat st;
		if (fstat(fd, &st) < 0) {
			int e = errno;

			close(fd);
			return sora_error_set(err, sora_error_class_errno(e),
					      "object %s: staged copy: %s", key, strerror(e));
		}
		return read_local(fd, (uint64_t)st.st_size, offset, length, cb, cb_ctx, key, err);
	}
	/* 3. The store. The size decides between filling the cache and
	 * streaming. */
	ret = sora_blob_driver_head(s->driver, key, &size, err);
	if (ret < 0 && err->cls == SORA_ERR_NOT_FOUND)
		return sora_error_set(err, SORA_ERR_NOT_FOUND,
				      "object %s: not found (cache, staging, %s)", key,
				      s->driver->ops->name);
	if (ret < 0)
		return ret;
	r = alloc_aligned(sizeof(*r));
	if (r == NULL)
		return sora_error_set(err, SORA_ERR_TEMPORARY, "out of memory");
	sora_blob_hash_init(&r->hasher);

	/* The body's size: the stored size, less the encryption overhead when
	 * it can be an encrypted object. */
	plain_size = size;
	if (s->keyring != NULL && sora_blob_crypt_plaintext_len(size, &plain_size) < 0)
		plain_size = size;
	if (s->cache != NULL && plain_size <= sora_blob_cache_max_object_size(s->cache)) {
		/* Small enough: fetch it whole into the cache, checking its hash,
		 * and serve the range from there. */
		char got[SORA_BLOB_HASH_HEX_SIZE];

		r->hash_it = true;
		r->want = SORA_BLOB_TO_END;
		ret = sora_blob_cache_writer_new(s->cache, key, &r->cw, err);
		if (ret < 0)
			goto out;
		ret = fetch_plain(s, key, SORA_BLOB_TO_END, true, r, err);
		if (ret < 0) {
			sora_blob_cache_writer_abort(&r->cw);
			goto out;
		}
		sora_blob_hash_final(&r->hasher, got);
		if (strcmp(got, hash) != 0) {
			sora_blob_cache_writer_abort(&r->cw);
			ret = sora_error_set(err, SORA_ERR_CORRUPT,
					     "object %s: content does not match its hash", key);
			goto out;
		}
		if (r->cw != NULL && sora_blob_cache_writer_commit(&r->cw, err) == 0 &&
		    (fd = sora_blob_cache_open_read(s->cache, key, &size)) >= 0) {
			ret = read_local(fd, size, offset, length, cb, cb_ctx, key, err);
			goto out;
		}
		/* Not cached after all (too large once decrypted, or evicted at
		 * once by a tiny cache): stream it. */
		sora_blob_hash_init(&r->hasher);
	}

	/* Stream from the store. Reading starts at byte 0 so the decryptor
	 * sees the header; for a range it stops at the end of the chunk that
	 * holds the range's last byte. */
	whole = length == SORA_BLOB_TO_END || length > UINT64_MAX - offset ||
		sora_blob_crypt_prefix_len(offset + length) >= size;
	fetch = whole ? SORA_BLOB_TO_END : sora_blob_crypt_prefix_len(offset + length);
	r->hash_it = offset == 0 && length == SORA_BLOB_TO_END;
	r->skip = offset;
	r->want = length;
	r->seen = 0;
	r->cb = cb;
	r->cb_ctx = cb_ctx;
	ret = fetch_plain(s, key, fetch, whole, r, err);
	if (ret == 0 && r->hash_it) {
		char got[SORA_BLOB_HASH_HEX_SIZE];
		sora_blob_hash_final(&r->hasher, got);
		if (strcmp(got, hash) != 0)
			ret = sora_error_set(err, SORA_ERR_CORRUPT,
					     "object %s: content does not match its hash", key);
	}
out:
	free(r);
	return ret;
}

int sora_blob_read_to_fd(struct sora_blob_store *s, int64_t account_id, const char *hash,
			 uint64_t offset, uint64_t length, int fd, struct sora_error *err)
{
	return sora_blob_read(s, account_id, hash, offset, length, sora_blob_fd_sink, &fd, err);
}

int sora_blob_delete(struct sora_blob_store *s, int64_t account_id, const char *hash,
		     struct sora_error *err)
{
	char key[SORA_BLOB_KEY_SIZE];
	int ret;

	if (object_key(account_id, hash, key, err) < 0)
		return -1;
	ret = sora_blob_driver_delete(s->driver, key, err);
	if (ret < 0)
		return ret;
	if (s->cache != NULL)
		sora_blob_cache_remove(s->cache, key);
	return sora_blob_unstage(s, account_id, hash, err);
}
