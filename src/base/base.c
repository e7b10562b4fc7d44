#include "base.h"

#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MK_ERRBUF 1024
static _Thread_local char errbuf[MK_ERRBUF];

const char *mk_last_error(void) { return errbuf; }

void mk_err_clear(void) { errbuf[0] = 0; }

const char *mk_status_name(mk_status s) {
    switch (s) {
    case MK_OK: return "ok";
    case MK_ERR_IO: return "io";
    case MK_ERR_FORMAT: return "format";
    case MK_ERR_UNSUPPORTED: return "unsupported";
    case MK_ERR_SHAPE: return "shape";
    case MK_ERR_MISSING: return "missing";
    case MK_ERR_ARG: return "argument";
    case MK_ERR_NOMEM: return "out of memory";
    case MK_ERR_INTERNAL: return "internal";
    }
    return "unknown";
}

/* Keeps messages to one line: control characters become spaces. */
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20) *s = ' ';
}

mk_status mk_err(mk_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    one_line(errbuf);
    return s;
}

mk_status mk_err_prefix(mk_status s, const char *fmt, ...) {
    char old[MK_ERRBUF];
    memcpy(old, errbuf, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(errbuf, sizeof errbuf, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n + 2 < sizeof errbuf) {
        errbuf[n] = ':';
        errbuf[n + 1] = ' ';
        size_t room = sizeof errbuf - (size_t)n - 2;
        size_t len = strnlen(old, room - 1);
        memcpy(errbuf + n + 2, old, len);
        errbuf[(size_t)n + 2 + len] = 0;
    }
    one_line(errbuf);
    return s;
}

void *mk_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) mk_err(MK_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *mk_calloc(size_t count, size_t size) {
    size_t n;
    if (!mk_mul_ok(count, size, &n)) {
        mk_err(MK_ERR_NOMEM, "allocation size overflow (%zu x %zu)", count, size);
        return NULL;
    }
    void *p = calloc(n ? count : 1, n ? size : 1);
    if (!p) mk_err(MK_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return p;
}

void *mk_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) mk_err(MK_ERR_NOMEM, "out of memory allocating %zu bytes", n);
    return q;
}

void *mk_malloc_aligned(size_t n) {
    void *p = NULL;
    size_t r = (n + 63) & ~(size_t)63;
    if (r < n || posix_memalign(&p, 64, r ? r : 64) != 0) {
        mk_err(MK_ERR_NOMEM, "out of memory allocating %zu aligned bytes", n);
        return NULL;
    }
    return p;
}

void mk_free_aligned(void *p) { free(p); }

char *mk_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = mk_malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

mk_status mk_map_open(mk_map *m, const char *path) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mk_err(MK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return mk_err(MK_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return mk_err(MK_ERR_IO, "%s: not a regular file", path);
    }
    m->path = mk_strdup(path);
    if (!m->path) {
        close(fd);
        return MK_ERR_NOMEM;
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = mmap(NULL, m->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            int e = errno;
            close(fd);
            free(m->path);
            m->path = NULL;
            return mk_err(MK_ERR_IO, "%s: cannot map: %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    return MK_OK;
}

void mk_map_close(mk_map *m) {
    if (!m) return;
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

void mk_map_advise(const mk_map *m, size_t off, size_t len, bool willneed) {
    if (!m->data || off >= m->size) return;
    if (len > m->size - off) len = m->size - off;
    long pg = sysconf(_SC_PAGESIZE);
    size_t a = off & ~((size_t)pg - 1);
    madvise((void *)(m->data + a), len + (off - a), willneed ? MADV_WILLNEED : MADV_DONTNEED);
}

void mk_advise_range(const void *p, size_t len, bool willneed) {
    if (!p || !len) return;
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1), e = ((uintptr_t)p + len + pg - 1) & ~(uintptr_t)(pg - 1);
    madvise((void *)a, (size_t)(e - a), willneed ? MADV_WILLNEED : MADV_DONTNEED);
}

mk_status mk_read_file(const char *path, char **out, size_t *len) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return mk_err(MK_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    char *buf = mk_malloc(cap);
    if (!buf) {
        fclose(f);
        return MK_ERR_NOMEM;
    }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = mk_realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                fclose(f);
                return MK_ERR_NOMEM;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return mk_err(MK_ERR_IO, "%s: read error", path);
    }
    buf[n] = 0;
    *out = buf;
    if (len) *len = n;
    return MK_OK;
}

char *mk_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = mk_malloc(a + b + 2);
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t i = a;
    if (a > 0 && dir[a - 1] != '/') p[i++] = '/';
    memcpy(p + i, name, b + 1);
    return p;
}

bool mk_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

double mk_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double mk_wall(void) { return mk_now(); }

mk_status mk_read_ids_file(const char *path, int32_t **ids, size_t *n) {
    *ids = NULL;
    *n = 0;
    char *text = NULL;
    mk_status st = mk_read_file(path, &text, NULL);
    if (st) return st;
    size_t cap = 1024, k = 0;
    int32_t *v = mk_malloc(cap * sizeof *v);
    if (!v) { free(text); return MK_ERR_NOMEM; }
    char *p = text;
    for (;;) {
        while (*p == ' ' || *p == '\n' || *p == '\t' || *p == '\r' || *p == ',') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && !strchr(" \n\t\r,", *end))) {
            free(v);
            free(text);
            return mk_err(MK_ERR_FORMAT, "%s: entry %zu is not a token id", path, k + 1);
        }
        if (k == cap) {
            int32_t *nv = mk_realloc(v, 2 * cap * sizeof *v);
            if (!nv) { free(v); free(text); return MK_ERR_NOMEM; }
            v = nv;
            cap *= 2;
        }
        v[k++] = (int32_t)x;
        p = end;
    }
    free(text);
    if (k == 0) { free(v); return mk_err(MK_ERR_FORMAT, "%s: no token ids", path); }
    *ids = v;
    *n = k;
    return MK_OK;
}
