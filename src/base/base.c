#include "base.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
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
    case MK_ERR_NONFINITE: return "non-finite";
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

/* Anonymous memory of len bytes (a multiple of MK_MAP_ALIGN) at an MK_MAP_ALIGN-aligned address:
 * len + MK_MAP_ALIGN mapped, the slack on either side given back. MAP_FAILED on failure. */
static uint8_t *map_aligned(size_t len, int prot, int flags) {
    uint8_t *r = mmap(NULL, len + MK_MAP_ALIGN, prot, MAP_PRIVATE | MAP_ANONYMOUS | flags, -1, 0);
    if (r == MAP_FAILED) return r;
    uint8_t *a = (uint8_t *)(((uintptr_t)r + MK_MAP_ALIGN - 1) & ~(uintptr_t)(MK_MAP_ALIGN - 1));
    if (a > r) munmap(r, (size_t)(a - r));
    if (r + MK_MAP_ALIGN > a) munmap(a + len, (size_t)(r + MK_MAP_ALIGN - a));
    return a;
}

/* Maps the file read-only; one of at least MK_MAP_ALIGN bytes at an MK_MAP_ALIGN-aligned address,
 * inside a reservation of whole MK_MAP_ALIGN units (*span bytes). */
static void *map_file(int fd, size_t size, size_t *span) {
    *span = size;
    if (size < MK_MAP_ALIGN || size > SIZE_MAX - 2 * MK_MAP_ALIGN) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    const size_t units = (size + MK_MAP_ALIGN - 1) & ~(MK_MAP_ALIGN - 1);
    uint8_t *a = map_aligned(units, PROT_NONE, MAP_NORESERVE);
    if (a == MAP_FAILED) return mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    void *p = mmap(a, size, PROT_READ, MAP_PRIVATE | MAP_FIXED, fd, 0);
    if (p == MAP_FAILED) {
        munmap(a, units);
        return p;
    }
    *span = units;
    return p;
}

/* Whether the kernel puts transparent huge pages under memory that asks for them. */
static bool thp_available(void) {
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (!f) return false;
    char line[128] = "";
    bool ok = fgets(line, sizeof line, f) && !strstr(line, "[never]");
    fclose(f);
    return ok;
}

/* MemAvailable from /proc/meminfo in bytes, or 0 when unknown. */
static size_t mem_available(void) {
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return 0;
    char line[256];
    unsigned long long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) break;
    fclose(f);
    return kb > SIZE_MAX / 1024 ? SIZE_MAX : (size_t)kb * 1024;
}

mk_status mk_map_make_resident(mk_map *m, bool *done) {
    *done = false;
    if (!m->data || m->resident || m->span < MK_MAP_ALIGN || m->span % MK_MAP_ALIGN || (uintptr_t)m->data % MK_MAP_ALIGN)
        return MK_OK; /* a small file, or mapped where no huge page fits */
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return mk_err(MK_ERR_IO, "%s: cannot open: %s", m->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || (size_t)st.st_size != m->size) {
        close(fd);
        return mk_err(MK_ERR_IO, "%s: changed size since it was opened", m->path);
    }
    if (!thp_available() || m->size > mem_available() / 10 * 9) {
        close(fd);
        return MK_OK;
    }
    /* the copy at an aligned address of its own, then moved over the mapping in one step */
    uint8_t *a = map_aligned(m->span, PROT_READ | PROT_WRITE, 0);
    if (a == MAP_FAILED) {
        close(fd);
        return MK_OK; /* no memory for a copy: the mapping serves */
    }
    madvise(a, m->span, MADV_HUGEPAGE);
    /* in MK_MAP_ALIGN pieces over the threads: the kernel clears each new huge page before the
     * copy, and on a VM the first touch of guest memory costs more than the copy */
    const size_t n_piece = m->span / MK_MAP_ALIGN;
    size_t bad_at = SIZE_MAX;
    int bad_errno = 0;
    #pragma omp parallel for schedule(dynamic, 8)
    for (size_t i = 0; i < n_piece; i++) {
        size_t off = i * MK_MAP_ALIGN;
        const size_t end = MK_MIN(m->size, off + MK_MAP_ALIGN);
        while (off < end) {
            ssize_t got = pread(fd, a + off, end - off, (off_t)off);
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0) {
                const int e = got < 0 ? errno : 0;
                #pragma omp critical(mk_map_read)
                if (off < bad_at) {
                    bad_at = off;
                    bad_errno = e;
                }
                break;
            }
            off += (size_t)got;
        }
    }
    close(fd);
    if (bad_at != SIZE_MAX) {
        munmap(a, m->span);
        return mk_err(MK_ERR_IO, "%s: read failed at byte %zu: %s", m->path, bad_at, bad_errno ? strerror(bad_errno) : "unexpected end of file");
    }
    if (mprotect(a, m->span, PROT_READ) != 0 ||
        mremap(a, m->span, m->span, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)m->data) == MAP_FAILED) {
        munmap(a, m->span);
        return MK_OK; /* the mapping is untouched and serves */
    }
    m->resident = true;
    *done = true;
    return MK_OK;
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
    m->size = m->span = (size_t)st.st_size;
    if (m->size > 0) {
        void *p = map_file(fd, m->size, &m->span);
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
    if (m->data) munmap((void *)m->data, m->span);
    free(m->path);
    memset(m, 0, sizeof *m);
}

void mk_map_advise(const mk_map *m, size_t off, size_t len, bool willneed) {
    if (!m->data || m->resident || off >= m->size) return;
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

mk_status mk_write_file_atomic(const char *path, const void *data, size_t len) {
    char *dcopy = mk_strdup(path), *tmp = mk_malloc(strlen(path) + 16);
    if (!dcopy || !tmp) {
        free(dcopy);
        free(tmp);
        return MK_ERR_NOMEM;
    }
    sprintf(tmp, "%s.tmp.XXXXXX", path);
    mk_status st = MK_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = mk_err(MK_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        goto out;
    }
    fchmod(fd, 0644);
    const char *c = data;
    size_t left = len;
    while (left > 0) {
        ssize_t w = write(fd, c, left);
        if (w < 0) {
            if (errno == EINTR) continue;
            st = mk_err(MK_ERR_IO, "%s: write failed: %s", path, strerror(errno));
            break;
        }
        c += w;
        left -= (size_t)w;
    }
    if (!st && fsync(fd) != 0) st = mk_err(MK_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    if (close(fd) != 0 && !st) st = mk_err(MK_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    if (!st && rename(tmp, path) != 0) st = mk_err(MK_ERR_IO, "%s: cannot rename the finished file into place: %s", path, strerror(errno));
    if (st) {
        unlink(tmp);
        goto out;
    }
    int dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
out:
    free(dcopy);
    free(tmp);
    return st;
}

