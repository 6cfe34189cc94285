/*
 * rwspool.c - write-ahead segments of remote-write batches (see rwspool.h).
 */
#include "rwspool.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#define MAGIC "TLMRWS1\n"
#define MAGIC_LEN 8

static void seg_path(char *out, size_t n, const char *dir, uint64_t seq, const char *ext)
{
    snprintf(out, n, "%s/%020llu.%s", dir, (unsigned long long)seq, ext);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int tlm_rwspool_list(const char *dir, uint64_t **seqs, size_t *n, int64_t *bytes,
                     struct tlm_error *err)
{
    DIR *d;
    struct dirent *e;
    size_t cap = 0;
    *seqs = NULL;
    *n = 0;
    *bytes = 0;
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        return tlm_error_set(err, TLM_EIO, "spool %s: %s", dir, strerror(errno));
    if (!(d = opendir(dir)))
        return tlm_error_set(err, TLM_EIO, "spool %s: %s", dir, strerror(errno));
    while ((e = readdir(d))) {
        char path[4096];
        unsigned long long seq;
        char ext[8];
        struct stat sb;
        if (sscanf(e->d_name, "%20llu.%7s", &seq, ext) != 2 || strlen(e->d_name) < 21)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (strcmp(ext, "tmp") == 0) {
            unlink(path);
            continue;
        }
        if (strcmp(ext, "seg") != 0 || stat(path, &sb) != 0)
            continue;
        if (*n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            uint64_t *s = realloc(*seqs, nc * sizeof(*s));
            if (!s) {
                closedir(d);
                return tlm_error_set(err, TLM_ENOMEM, "out of memory");
            }
            *seqs = s;
            cap = nc;
        }
        (*seqs)[(*n)++] = seq;
        *bytes += sb.st_size;
    }
    closedir(d);
    if (*n)
        qsort(*seqs, *n, sizeof(**seqs), cmp_u64);
    return 0;
}

int64_t tlm_rwspool_write(const char *dir, uint64_t seq, const char *p, size_t n,
                          struct tlm_error *err)
{
    char tmp[4096], fin[4096];
    size_t cap = ZSTD_compressBound(n) + MAGIC_LEN, zn;
    char *z = malloc(cap);
    int fd;
    if (!z)
        return tlm_error_set(err, TLM_ENOMEM, "out of memory");
    memcpy(z, MAGIC, MAGIC_LEN);
    zn = ZSTD_compress(z + MAGIC_LEN, cap - MAGIC_LEN, p, n, 1);
    if (ZSTD_isError(zn)) {
        free(z);
        return tlm_error_set(err, TLM_EIO, "zstd: %s", ZSTD_getErrorName(zn));
    }
    zn += MAGIC_LEN;
    seg_path(tmp, sizeof(tmp), dir, seq, "tmp");
    seg_path(fin, sizeof(fin), dir, seq, "seg");
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        free(z);
        return tlm_error_set(err, TLM_EIO, "%s: %s", tmp, strerror(errno));
    }
    for (size_t off = 0; off < zn;) {
        ssize_t w = write(fd, z + off, zn - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0) {
            int e = errno;
            close(fd);
            unlink(tmp);
            free(z);
            return tlm_error_set(err, TLM_EIO, "%s: %s", tmp, strerror(e));
        }
        off += (size_t)w;
    }
    free(z);
    if (fsync(fd) != 0 || close(fd) != 0 || rename(tmp, fin) != 0) {
        int e = errno;
        unlink(tmp);
        return tlm_error_set(err, TLM_EIO, "%s: %s", fin, strerror(e));
    }
    return (int64_t)zn;
}

int tlm_rwspool_read(const char *dir, uint64_t seq, struct tlm_buf *out, struct tlm_error *err)
{
    char path[4096];
    struct tlm_buf raw = TLM_BUF_INIT;
    FILE *f;
    char chunk[65536];
    size_t r;
    int rc = 0;
    seg_path(path, sizeof(path), dir, seq, "seg");
    if (!(f = fopen(path, "rb")))
        return tlm_error_set(err, errno == ENOENT ? TLM_ENOTFOUND : TLM_EIO, "%s: %s", path,
                             strerror(errno));
    while ((r = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (tlm_buf_append(&raw, chunk, r)) {
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
            break;
        }
    fclose(f);
    if (rc == 0) {
        unsigned long long size;
        if (raw.len < MAGIC_LEN || memcmp(raw.data, MAGIC, MAGIC_LEN) != 0 ||
            (size = ZSTD_getFrameContentSize(raw.data + MAGIC_LEN, raw.len - MAGIC_LEN)) ==
                ZSTD_CONTENTSIZE_ERROR ||
            size == ZSTD_CONTENTSIZE_UNKNOWN) {
            rc = tlm_error_set(err, TLM_ESTATE, "%s: not a spool segment", path);
        } else if (tlm_buf_reserve(out, (size_t)size)) {
            rc = tlm_error_set(err, TLM_ENOMEM, "out of memory");
        } else {
            size_t d = ZSTD_decompress(out->data + out->len, (size_t)size, raw.data + MAGIC_LEN,
                                       raw.len - MAGIC_LEN);
            if (ZSTD_isError(d) || d != size) {
                rc = tlm_error_set(err, TLM_ESTATE, "%s: corrupt segment", path);
            } else {
                out->len += d;
                out->data[out->len] = '\0';
            }
        }
    }
    tlm_buf_free(&raw);
    return rc;
}

int tlm_rwspool_remove(const char *dir, uint64_t seq, struct tlm_error *err)
{
    char path[4096];
    seg_path(path, sizeof(path), dir, seq, "seg");
    if (unlink(path) != 0 && errno != ENOENT)
        return tlm_error_set(err, TLM_EIO, "%s: %s", path, strerror(errno));
    return 0;
}
