/* Streaming read bandwidth: T threads (OpenMP) each sum their slice of a large buffer with
 * 512-bit loads (8-byte loads without AVX-512); prints the best of R passes in GB/s (1 GB = 1e9 bytes).
 * usage: bw [MiB=2048] [reps=10]   (threads from OMP_NUM_THREADS)
 * Build: cc -O2 -march=native -fopenmp bench/bw.c -o bw */
#include <immintrin.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

int main(int argc, char **argv) {
    size_t mib = argc > 1 ? (size_t)atol(argv[1]) : 2048;
    int reps = argc > 2 ? atoi(argv[2]) : 10;
    size_t n = mib << 20;
    char *buf = aligned_alloc(4096, n);
    if (!buf) return 1;
    #pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i += 4096) memset(buf + i, (int)(i >> 12), 4096);
    double best = 1e30, sink = 0;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        /* 1 MiB pieces handed out dynamically: on a shared machine a descheduled thread does not
         * leave its slice unread while the other waits (the figure is what the threads together get) */
        const size_t piece = (size_t)1 << 20, n_pieces = n / piece;
        #pragma omp parallel for schedule(dynamic, 1) reduction(+ : sink)
        for (size_t pc = 0; pc < n_pieces; pc++) {
            const size_t b = pc * piece, e = b + piece;
#if defined(__AVX512F__)
            __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
            for (size_t i = b; i < e; i += 256) {
                a0 = _mm512_add_epi64(a0, _mm512_load_si512(buf + i));
                a1 = _mm512_add_epi64(a1, _mm512_load_si512(buf + i + 64));
                a2 = _mm512_add_epi64(a2, _mm512_load_si512(buf + i + 128));
                a3 = _mm512_add_epi64(a3, _mm512_load_si512(buf + i + 192));
            }
            sink += (double)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
#else
            long long s = 0;
            for (size_t i = b; i < e; i += 64) s += *(const long long *)(buf + i);
            sink += (double)s;
#endif
        }
        double t = now() - t0;
        if (t < best) best = t;
    }
    printf("%.2f\n", (double)n / best / 1e9);
    fprintf(stderr, "bw: %zu MiB, %d threads, best of %d: %.2f GB/s (checksum %g)\n", mib, omp_get_max_threads(), reps,
            (double)n / best / 1e9, sink);
    free(buf);
    return 0;
}
