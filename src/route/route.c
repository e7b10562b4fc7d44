#include "route.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char mk_route_syntax[] = "topk:K | topp:P[:KMAX][:renorm] | skip:BETA | skip:auto:STATS | boost:LAYER:EXPERT:FACTOR | rank:R | mask:FILE | zero:FILE";

int64_t mk_route_select(const mk_route_cfg *rc, const float *logits, int32_t *ids, float *weights, float *p) {
    const int64_t E = rc->n_expert;
    float mx = -INFINITY;
    for (int64_t e = 0; e < E; e++)
        if ((!rc->mask || rc->mask[e]) && logits[e] > mx) mx = logits[e];
    float sum = 0;
    for (int64_t e = 0; e < E; e++) {
        p[e] = (!rc->mask || rc->mask[e]) ? expf(logits[e] - mx) : 0.0f;
        sum += p[e];
    }
    /* a NaN logit makes every probability NaN, as in transformers (never all-zero weights) */
    for (int64_t e = 0; e < E; e++) p[e] = sum > 0 || sum != sum ? p[e] / sum : 0.0f;
    for (size_t b = 0; b < rc->n_boosts; b++) p[rc->boosts[b].expert] *= rc->boosts[b].factor;

    /* Selection in descending probability, lower index first on ties. */
    const int64_t want = rc->rank >= 0 ? rc->rank + 1 : rc->top_p > 0 ? rc->slots : rc->k;
    int64_t n = 0;
    float cum = 0;
    for (; n < want; n++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            if ((rc->mask && !rc->mask[e]) || p[e] < 0) continue;
            if (best < 0 || p[e] > p[best]) best = e;
        }
        if (best < 0) break;
        ids[n] = (int32_t)best;
        weights[n] = p[best];
        p[best] = -1.0f; /* taken */
        cum += weights[n];
        if (rc->top_p > 0 && cum > rc->top_p) {
            n++;
            break;
        }
    }
    if (rc->rank >= 0) {
        if (n == rc->rank + 1) {
            ids[0] = ids[n - 1];
            weights[0] = 1.0f;
            n = 1;
        } else {
            n = 0;
        }
        for (int64_t j = n; j < rc->slots; j++) {
            ids[j] = -1;
            weights[j] = 0.0f;
        }
        return n;
    }
    if (rc->skip_beta > 0 && n > 1) {
        int64_t kept = 1;
        for (int64_t j = 1; j < n; j++)
            if (!(weights[j] < rc->skip_beta * weights[0])) {
                ids[kept] = ids[j];
                weights[kept++] = weights[j];
            }
        n = kept;
    }
    if (rc->top_p > 0 ? rc->top_p_renorm : rc->norm_topk) {
        float ws = 0;
        for (int64_t j = 0; j < n; j++) ws += weights[j];
        if (ws > 0)
            for (int64_t j = 0; j < n; j++) weights[j] /= ws;
    }
    for (int64_t j = n; j < rc->slots; j++) {
        ids[j] = -1;
        weights[j] = 0.0f;
    }
    return n;
}

static bool parse_num(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return end != s && *end == 0 && isfinite(*out);
}

static bool parse_int(const char *s, int64_t *out) {
    char *end;
    long long v = strtoll(s, &end, 10);
    *out = v;
    return end != s && *end == 0;
}

mk_status mk_route_parse(mk_route_opts *o, const char *spec) {
    char buf[256];
    if (strlen(spec) >= sizeof buf) return mk_err(MK_ERR_ARG, "route '%.40s...': too long (expected %s)", spec, mk_route_syntax);
    strcpy(buf, spec);
    char *f[5] = {0};
    int nf = 0;
    for (char *tok = buf, *save = NULL; nf < 5 && (tok = strtok_r(nf ? NULL : buf, ":", &save)); nf++) f[nf] = tok;
    double x;
    int64_t a, b;
#define BAD(what) return mk_err(MK_ERR_ARG, "route '%s': %s (expected %s)", spec, what, mk_route_syntax)
    if (nf == 0) BAD("empty");
    if (!strcmp(f[0], "topk")) {
        if (nf != 2 || !parse_int(f[1], &a) || a < 1) BAD("K must be a positive integer");
        o->k = a;
    } else if (!strcmp(f[0], "topp")) {
        if (nf < 2 || nf > 4 || !parse_num(f[1], &x) || !(x > 0 && x <= 1)) BAD("P must be in (0, 1]");
        const bool renorm = nf > 2 && !strcmp(f[nf - 1], "renorm");
        const int nk = nf - 2 - renorm; /* KMAX fields: 0 or 1 */
        if (nk > 1 || (nk == 1 && (!parse_int(f[2], &a) || a < 1))) BAD("KMAX must be a positive integer (then optionally :renorm)");
        o->top_p = (float)x;
        o->k_max = nk == 1 ? a : 0;
        o->top_p_renorm = renorm;
    } else if (!strcmp(f[0], "skip")) {
        if (nf != 2) BAD("give BETA or auto");
        if (!strcmp(f[1], "auto")) BAD("skip:auto needs a stats.json: skip:auto:STATS (read by run, eval and profile)");
        if (!parse_num(f[1], &x) || x < 0 || x > 1) BAD("BETA must be in [0, 1]");
        o->skip_beta = (float)x;
    } else if (!strcmp(f[0], "boost")) {
        if (nf != 4 || !parse_int(f[1], &a) || !parse_int(f[2], &b) || a < 0 || b < 0 || !parse_num(f[3], &x) || x < 0)
            BAD("give LAYER:EXPERT:FACTOR with a non-negative factor");
        mk_route_boost *nb = mk_realloc((void *)o->boosts, (o->n_boosts + 1) * sizeof *nb);
        if (!nb) return MK_ERR_NOMEM;
        nb[o->n_boosts].layer = a;
        nb[o->n_boosts].expert = b;
        nb[o->n_boosts].factor = (float)x;
        o->boosts = nb;
        o->n_boosts++;
    } else if (!strcmp(f[0], "rank")) {
        if (nf != 2 || !parse_int(f[1], &a) || a < 0) BAD("R must be a non-negative integer");
        o->rank_only = true;
        o->rank = a;
    } else if (!strcmp(f[0], "mask")) {
        BAD("mask:FILE is read by the command (run, eval, profile), not by the library parser");
    } else {
        BAD("unknown policy");
    }
#undef BAD
    return MK_OK;
}

void mk_route_opts_clear(mk_route_opts *o) {
    free((void *)o->boosts);
    o->boosts = NULL;
    o->n_boosts = 0;
}
