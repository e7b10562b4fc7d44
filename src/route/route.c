#include "route.h"
#include "model/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char mk_route_syntax[] = "topk:K | topp:P[:KMAX][:renorm] | skip:BETA | skip:auto:STATS | boost:LAYER:EXPERT:FACTOR | rank:R | mask:FILE | zero:FILE";

mk_route_cfg mk_route_cfg_of(const mk_config *cfg) {
    return (mk_route_cfg){.n_expert = cfg->n_expert, .k = cfg->k_active, .slots = cfg->k_active, .norm_topk = cfg->norm_topk, .rank = -1,
                          .sigmoid = cfg->sigmoid, .n_group = cfg->n_group, .topk_group = cfg->topk_group, .group_top2 = cfg->group_top2,
                          .scale = cfg->routed_scale, .sparsemixer_eps = cfg->sparsemixer_eps};
}

/* Keeps the topk_group groups with the best group scores (the lower group on ties) and excludes
 * the experts of the others: c[e] = -inf. Excluded experts (c = -inf) score nothing in a group. */
static void limit_groups(const mk_route_cfg *rc, float *c) {
    const int64_t G = rc->n_group, per = rc->n_expert / G;
    float gs[256];
    uint8_t keep[256] = {0};
    for (int64_t g = 0; g < G; g++) {
        float b1 = -INFINITY, b2 = -INFINITY;
        for (int64_t e = g * per; e < (g + 1) * per; e++) {
            if (c[e] > b1) { b2 = b1; b1 = c[e]; }
            else if (c[e] > b2) b2 = c[e];
        }
        gs[g] = rc->group_top2 ? (b2 == -INFINITY ? b1 : b1 + b2) : b1;
    }
    for (int64_t n = 0; n < rc->topk_group; n++) {
        int64_t best = -1;
        for (int64_t g = 0; g < G; g++)
            if (!keep[g] && (best < 0 || gs[g] > gs[best])) best = g;
        if (best < 0) break;
        keep[best] = 1;
    }
    for (int64_t g = 0; g < G; g++)
        if (!keep[g])
            for (int64_t e = g * per; e < (g + 1) * per; e++) c[e] = -INFINITY;
}

/* Phi-MoE's sparsemixer at inference (transformers' sparsemixer, training false), for k experts (2
 * in the model): round j takes the best logit m among the allowed experts not yet taken (the
 * lower index on ties); its weight is the softmax at it over the untaken experts whose logit s
 * satisfies (m − s) / max(|s|, m) <= 2·eps. The weights are not renormalised. */
static int64_t sparsemixer(const mk_route_cfg *rc, const float *s, int32_t *ids, float *weights) {
    const int64_t E = rc->n_expert;
    const float eps2 = 2 * rc->sparsemixer_eps;
    int64_t n = 0;
    for (; n < rc->k; n++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            bool taken = (rc->mask && !rc->mask[e]) || s[e] != s[e];
            for (int64_t j = 0; j < n && !taken; j++) taken = ids[j] == e;
            if (!taken && (best < 0 || s[e] > s[best])) best = e;
        }
        if (best < 0) break;
        const float m = s[best];
        float sum = 0;
        for (int64_t e = 0; e < E; e++) {
            bool taken = rc->mask && !rc->mask[e];
            for (int64_t j = 0; j < n && !taken; j++) taken = ids[j] == e;
            if (taken || (m - s[e]) / fmaxf(fabsf(s[e]), m) > eps2) continue;
            sum += expf(s[e] - m);
        }
        ids[n] = (int32_t)best;
        weights[n] = 1.0f / sum; /* exp(m − m) / sum */
    }
    for (int64_t j = n; j < rc->slots; j++) {
        ids[j] = -1;
        weights[j] = 0.0f;
    }
    return n;
}

int64_t mk_route_select(const mk_route_cfg *rc, const float *logits, int32_t *ids, float *weights, float *p) {
    const int64_t E = rc->n_expert;
    if (rc->sparsemixer_eps > 0) return sparsemixer(rc, logits, ids, weights);
    if (rc->sigmoid) {
        for (int64_t e = 0; e < E; e++) p[e] = (!rc->mask || rc->mask[e]) ? 1.0f / (1.0f + expf(-logits[e])) : 0.0f;
    } else {
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
    }
    for (size_t b = 0; b < rc->n_boosts; b++) p[rc->boosts[b].expert] *= rc->boosts[b].factor;
    /* The choice scores c: the scores plus the selection bias; -inf for an expert that may not be
     * chosen (masked, or in a dropped group); a taken expert becomes -inf too. */
    float *c = p + E;
    for (int64_t e = 0; e < E; e++) c[e] = (rc->mask && !rc->mask[e]) ? -INFINITY : rc->sel_bias ? p[e] + rc->sel_bias[e] : p[e];
    if (rc->n_group > 1) limit_groups(rc, c);

    /* Selection in descending choice score, lower index first on ties. Top-p accumulates
     * probabilities: the softmax's, or a sigmoid router's scores normalised to sum to 1 over the
     * allowed experts (cum_scale). */
    const int64_t want = rc->rank >= 0 ? rc->rank + 1 : rc->top_p > 0 ? rc->slots : rc->k;
    int64_t n = 0;
    float cum = 0, cum_scale = 1;
    if (rc->sigmoid && rc->top_p > 0) {
        float ss = 0;
        for (int64_t e = 0; e < E; e++) ss += (!rc->mask || rc->mask[e]) ? p[e] : 0.0f;
        cum_scale = ss > 0 ? 1.0f / ss : 0.0f;
    }
    for (; n < want; n++) {
        int64_t best = -1;
        for (int64_t e = 0; e < E; e++) {
            if (c[e] == -INFINITY) continue;
            if (best < 0 || c[e] > c[best]) best = e;
        }
        if (best < 0) break;
        ids[n] = (int32_t)best;
        weights[n] = p[best];
        c[best] = -INFINITY; /* taken */
        cum += weights[n] * cum_scale;
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
    /* the weight rule: top-p keeps the raw probabilities unless top_p_renorm; a sigmoid router's
     * raw scores are not probabilities, so its own rule (norm_topk) applies under top-p too */
    if (rc->top_p > 0 && !rc->sigmoid ? rc->top_p_renorm : rc->norm_topk) {
        float ws = 0;
        for (int64_t j = 0; j < n; j++) ws += weights[j];
        if (ws > 0)
            for (int64_t j = 0; j < n; j++) weights[j] /= ws;
    }
    if (rc->scale != 0 && rc->scale != 1)
        for (int64_t j = 0; j < n; j++) weights[j] *= rc->scale;
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
