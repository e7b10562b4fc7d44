/* moekit bench: prompt processing (pp) and token generation (tg) speed, like llama-bench. */
#include "args.h"
#include "cli.h"
#include "moekit.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>

/* CPU seconds (user + system) this process has used. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + 1e-6 * (double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_sec +
           1e-6 * (double)ru.ru_stime.tv_usec;
}

/* --roof: a plain streaming read by the same threads, interleaved with the generated tokens, gives
 * the bandwidth the machine had while they ran. On a shared VM the read bandwidth moves 10-25%
 * within minutes, so a figure measured before or after the run says little about it. The buffer
 * (ROOF_MIB, many times any last-level cache) is read one 8-byte load per 64-byte line (every
 * line comes from DRAM, with as little work as a read can have, as bench/bw.c), in 1 MiB pieces
 * handed out dynamically so a descheduled thread does not leave its slice unread. */
#define ROOF_MIB 1024
#define ROOF_EVERY_S 0.2 /* decode seconds between read passes */

static volatile uint64_t g_sink; /* keeps the reads */

/* One pass over buf; returns its seconds. */
static double read_pass(const uint8_t *buf, size_t n) {
    const size_t piece = (size_t)1 << 20, n_pieces = n / piece;
    uint64_t sum = 0;
    const double t0 = mk_wall();
    #pragma omp parallel for schedule(dynamic, 1) reduction(+ : sum)
    for (size_t p = 0; p < n_pieces; p++) {
        const uint8_t *b = buf + p * piece;
        uint64_t s = 0;
        for (size_t i = 0; i < piece; i += 64) {
            uint64_t v;
            memcpy(&v, b + i, sizeof v);
            s += v;
        }
        sum += s;
    }
    const double t = mk_wall() - t0;
    g_sink += sum;
    return t;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: moekit bench -m MODEL_DIR [-p 512] [-n 128] [-t THREADS] [-r REPS] [--roof] [--bf16-dot] [--mmap]\n"
            "Prints tokens/s for a prompt of P random tokens (pp, one batched forward) and for N\n"
            "generated tokens (tg, one token per forward, KV cache growing from empty), as the mean and\n"
            "standard deviation over REPS runs after one warm-up run. cpu%% is the CPU time the process got\n"
            "over wall time × threads: well under 100%% means the machine is shared and the threads waited\n"
            "for a core (or idled at barriers).\n"
            "  -m, --model DIR   HF checkpoint directory\n"
            "  -p, --n-prompt P  prompt tokens (default 512; 0 = skip pp)\n"
            "  -n, --n-gen N     generated tokens (default 128; 0 = skip tg)\n"
            "  -t, --threads N   threads (default: all cores)\n"
            "  -r, --reps R      repetitions (default 5)\n"
            "  --roof            tg: also the memory-bandwidth roof. A plain read of a 1 GiB buffer by the\n"
            "                    same threads runs between the generated tokens (every 0.2 s of decode,\n"
            "                    not counted in t/s); roof t/s = that read's bandwidth / the weight bytes\n"
            "                    one token reads (every weight but the embedding table, k experts a MoE\n"
            "                    layer). Prints the bandwidth and tg as %% of the roof, mean ± sd over REPS.\n"
            "  --bf16-dot        BF16 weights: AVX512-BF16 dot products on bf16-rounded activations for\n"
            "                    prefill (faster, less exact; as llama.cpp does)\n"
            MK_CLI_MMAP_HELP);
}

static void stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

int mk_cmd_bench(int argc, char **argv) {
    const char *dir = NULL;
    int64_t np = 512, ng = 128, threads = 0, reps = 5;
    bool bf16dot = false, keep_mapped = false, roof = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = mk_arg_value(argc, argv, &i))) return 2
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { VAL(); dir = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--n-prompt")) { VAL(); if (!mk_arg_int(a, v, 0, 1 << 20, &np)) return 2; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-gen")) { VAL(); if (!mk_arg_int(a, v, 0, 1 << 20, &ng)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!mk_arg_int(a, v, 1, 1024, &threads)) return 2; }
        else if (!strcmp(a, "-r") || !strcmp(a, "--reps")) { VAL(); if (!mk_arg_int(a, v, 1, 1000, &reps)) return 2; }
        else if (!strcmp(a, "--bf16-dot")) bf16dot = true;
        else if (!strcmp(a, "--roof")) roof = true;
        else if (!strcmp(a, "--mmap")) keep_mapped = true;
        else { fprintf(stderr, "moekit bench: unknown option '%s' (moekit bench --help)\n", a); return 2; }
#undef VAL
    }
    if (!dir && !(dir = mk_default_model())) { fprintf(stderr, "moekit bench: no model given (-m DIR)\n"); return 2; }
    if (np == 0 && ng == 0) { fprintf(stderr, "moekit bench: nothing to do (-p 0 -n 0)\n"); return 2; }
    if (threads) omp_set_num_threads((int)threads);
    if (bf16dot && !mk_kernels_set_bf16_dot(true)) fprintf(stderr, "moekit bench: --bf16-dot: this CPU has no AVX512-BF16; ignored\n");

    int rc = 1;
    mk_model *m = NULL;
    mk_ctx *c = NULL;
    int32_t *tok = NULL;
    float *logits = NULL;
    double *tv = NULL, *bwv = NULL, *pct = NULL;
    uint8_t *rbuf = NULL;
    const size_t rbytes = (size_t)ROOF_MIB << 20;
    if (mk_cli_load_model(&m, dir, keep_mapped)) goto done;
    const mk_model_info *in = mk_model_get_info(m);
    const size_t n_ctx = (size_t)(np > ng ? np : ng) + 1;
    if (mk_ctx_new(&c, m, n_ctx, np > 0 ? (size_t)np : 1)) { rc = mk_cli_fail(); goto done; }
    tok = malloc(n_ctx * sizeof *tok);
    logits = malloc((size_t)in->vocab * sizeof *logits);
    tv = malloc((size_t)(reps + 1) * sizeof *tv);
    bwv = malloc((size_t)(reps + 1) * sizeof *bwv);
    pct = malloc((size_t)(reps + 1) * sizeof *pct);
    if (!tok || !logits || !tv || !bwv || !pct) { fprintf(stderr, "moekit bench: out of memory\n"); goto done; }
    uint64_t s = 12345;
    for (size_t i = 0; i < n_ctx; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        tok[i] = (int32_t)((s >> 33) % (uint64_t)in->vocab);
    }
    const char *names[8];
    int64_t bytes[8];
    size_t nd = mk_model_bytes_by_dtype(m, names, bytes, 8);
    double gib = 0;
    char dts[64] = "";
    for (size_t i = 0; i < nd; i++) {
        gib += (double)bytes[i] / (1024.0 * 1024 * 1024);
        snprintf(dts + strlen(dts), sizeof dts - strlen(dts), "%s%s", i ? "+" : "", names[i]);
    }
    if (roof && ng > 0) {
        rbuf = mmap(NULL, rbytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (rbuf == MAP_FAILED) {
            rbuf = NULL;
            fprintf(stderr, "moekit bench: --roof: cannot map a %d MiB read buffer\n", ROOF_MIB);
            goto done;
        }
        madvise(rbuf, rbytes, MADV_HUGEPAGE); /* as the resident weights: a TLB miss per 2 MiB */
        #pragma omp parallel for schedule(static)
        for (size_t i = 0; i < rbytes; i += 4096) memset(rbuf + i, (int)(i >> 12), 4096);
    }
    const int64_t tok_bytes = mk_model_token_bytes(m);
    printf("| model | dtype | size | params | kernels | threads | test | t/s | cpu%% |%s\n", rbuf ? " read GB/s | % of roof |" : "");
    printf("| ----- | ----- | ---: | -----: | ------- | ------: | ---: | --: | ---: |%s\n", rbuf ? " ---: | ---: |" : "");
    fflush(stdout);
    for (int which = 0; which < 2; which++) {
        const int64_t n = which == 0 ? np : ng;
        if (n == 0) continue;
        const bool with_roof = which == 1 && rbuf;
        double cpu_sum = 0, wall_sum = 0;
        for (int64_t r = 0; r <= reps; r++) { /* r = 0: warm-up */
            mk_ctx_reset(c);
            double dt = 0, c0 = cpu_seconds(), read_s = 0, since_read = ROOF_EVERY_S, c_read = 0;
            int64_t passes = 0;
            if (which == 0) {
                const double t0 = mk_wall();
                if (mk_ctx_forward(c, tok, (size_t)n, MK_LOGITS_LAST, logits)) { rc = mk_cli_fail(); goto done; }
                dt = mk_wall() - t0;
            } else {
                for (int64_t i = 0; i <= n; i++) {
                    if (with_roof && (since_read >= ROOF_EVERY_S || i == n)) { /* (CPU time of reads excluded) */
                        const double cr = cpu_seconds();
                        read_s += read_pass(rbuf, rbytes);
                        c_read += cpu_seconds() - cr;
                        passes++;
                        since_read = 0;
                    }
                    if (i == n) break;
                    const double t0 = mk_wall();
                    if (mk_ctx_forward(c, tok + i, 1, MK_LOGITS_LAST, logits)) { rc = mk_cli_fail(); goto done; }
                    const double d = mk_wall() - t0;
                    dt += d;
                    since_read += d;
                }
            }
            if (r > 0) {
                tv[r - 1] = (double)n / dt;
                cpu_sum += cpu_seconds() - c0 - c_read;
                wall_sum += dt;
                if (with_roof) {
                    bwv[r - 1] = (double)passes * (double)rbytes / read_s / 1e9;
                    pct[r - 1] = 100.0 * tv[r - 1] * (double)tok_bytes / (bwv[r - 1] * 1e9);
                }
            }
        }
        double mean, sd;
        stats(tv, (int)reps, &mean, &sd);
        printf("| %s %lldL | %s | %.2f GiB | %.2f B | %s | %d | %s%lld | %.2f ± %.2f | %.0f%% |", in->model_type,
               (long long)in->n_layer, dts, gib, (double)in->params_total / 1e9, mk_kernels_describe(), omp_get_max_threads(),
               which == 0 ? "pp" : "tg", (long long)n, mean, sd, 100.0 * cpu_sum / (wall_sum * omp_get_max_threads()));
        if (with_roof) {
            double bm, bs, pm, ps;
            stats(bwv, (int)reps, &bm, &bs);
            stats(pct, (int)reps, &pm, &ps);
            printf(" %.2f ± %.2f | %.1f ± %.1f |", bm, bs, pm, ps);
        } else if (rbuf) printf(" | |");
        printf("\n");
        fflush(stdout);
    }
    if (rbuf) printf("roof: %.1f MB of weights per token (every weight but the embedding table, %lld of %lld experts a MoE layer)\n",
                     (double)tok_bytes / 1e6, (long long)in->k_active, (long long)in->n_expert);
    rc = 0;
done:
    free(tok);
    free(logits);
    free(tv);
    free(bwv);
    free(pct);
    if (rbuf) munmap(rbuf, rbytes);
    mk_ctx_free(c);
    mk_model_free(m);
    return rc;
}
