/* File helpers shared by the fs driver, the staging area and the cache:
 * directory creation, durable renames, temp files.
 *
 * Durability recipe used everywhere a file must survive a crash: write to a
 * temp file on the same file system, fsync it, rename it into place, fsync
 * the directory that received the new name.
 *
 * Blocking: these functions do file I/O and fsync; worker threads only.
 * Thread safety: reentrant; paths are borrowed. */
#ifndef SORA_BLOB_FILE_H
#define SORA_BLOB_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend/blob/blob-driver.h"

/* Creates dir and its missing parents (like mkdir -p). Returns 0 or -1 with
 * errno set. */
int sora_blob_mkdirs(const char *dir, mode_t mode);
/* Like sora_blob_mkdirs(), and for every directory it creates it fsyncs
 * the parent, so the new directory survives a crash together with the
 * files renamed into it. The new directory itself is not fsynced: the
 * fsync of what is put into it is. */
int sora_blob_mkdirs_durable(const char *dir, mode_t mode);
/* The same for the directory that contains path. */
int sora_blob_mkdirs_parent_durable(const char *path, mode_t mode);
/* fsyncs a directory. Returns 0 or -1 with errno set. */
int sora_blob_fsync_dir(const char *dir);
/* fsyncs the directory that contains path. */
int sora_blob_fsync_parent(const char *path);
/* Creates the directory that contains path (and its parents). */
int sora_blob_mkdirs_parent(const char *path, mode_t mode);
/* Joins dir + "/" + name into dst. Returns 0, or -1 if it does not fit. */
int sora_blob_path_join(char *dst, size_t size, const char *dir, const char *name);
/* Creates a new temp file in dir (mode 0600, O_CLOEXEC), writes its path
 * into path_r. Returns the fd, or -1 with errno set. */
int sora_blob_tmpfile(const char *dir, char *path_r, size_t size);
/* Removes every regular file directly inside dir (stale temp files after a
 * crash). Returns the number removed, or -1 with errno set. */
int sora_blob_clean_dir(const char *dir);
/* The last steps of the durability recipe for a file written (not yet
 * fsynced) at tmp through fd: fsync fd, create path's directory durably,
 * rename tmp to path, fsync the directory. tmp[0] is cleared once the
 * rename is done, so the caller knows whether a temp file is left to
 * remove. Returns 0, or -1 with errno set and *what_r naming the step
 * ("fsync", "mkdir", "rename", "fsync directory"). */
int sora_blob_commit_file(int fd, char *tmp, const char *path, const char **what_r);
/* Writes all of data, retrying short writes and EINTR. 0 or -1 (errno). */
int sora_blob_write_all(int fd, const void *data, size_t len);
/* Writes a whole source into fd. Returns 0 or -1 with err set. */
int sora_blob_write_source(int fd, struct sora_blob_source *src, struct sora_error *err);
/* Sends bytes [offset, offset+length) of fd (clipped to file_size) to cb in
 * pieces of at most 64 KiB. Returns 0, or -1 with err set: a read error, or
 * SORA_ERR_ABORTED when cb stopped. */
int sora_blob_send_range(int fd, uint64_t file_size, uint64_t offset, uint64_t length,
			 sora_blob_write_cb *cb, void *cb_ctx, struct sora_error *err);

#endif
