/* The "fs" blob driver: objects are files under a root directory
 * ([storage] fs_path), one file per key at <root>/<key>.
 *
 * Writes are atomic and durable: the body goes to a temp file in
 * <root>/.sora-tmp (same file system), is fsynced, renamed to its key and
 * the receiving directory is fsynced; a reader sees the old object or the
 * new one, never a part. Temp files left by a crash are removed when the
 * driver is created. Keys whose first segment is ".sora-tmp" are refused.
 *
 * Blocking file I/O: worker threads only. Thread-safe (no shared mutable
 * state besides the file system). */
#ifndef SORA_BLOB_FS_H
#define SORA_BLOB_FS_H

#include <stddef.h>

#include "backend/blob/blob-driver.h"

#define SORA_BLOB_FS_TMPDIR ".sora-tmp"

/* Creates the driver (and root, if missing). root is copied. Returns 0, or
 * -1 with err set. */
int sora_blob_fs_create(const char *root, struct sora_blob_driver **drv_r,
			struct sora_error *err);

#endif
