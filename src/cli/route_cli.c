#include "route_cli.h"

#include "compress/compress.h"
#include "route/route.h"

#include <stdlib.h>
#include <string.h>

bool mk_cli_route_add(mk_cli_route *r, const char *spec) {
    if (r->n >= MK_CLI_MAX_ROUTES) {
        fprintf(stderr, "moekit: at most %d --route options\n", MK_CLI_MAX_ROUTES);
        return false;
    }
    r->specs[r->n++] = spec;
    return true;
}

mk_status mk_cli_route_apply(mk_cli_route *r, const mk_model *m, mk_ctx *c) {
    const mk_model_info *in = mk_model_get_info(m);
    for (int i = 0; i < r->n; i++) {
        const char *s = r->specs[i];
        mk_status st;
        if (!strncmp(s, "skip:auto:", 10)) {
            mk_stats *stats = NULL;
            free(r->betas);
            r->betas = mk_calloc((size_t)in->n_layer, sizeof(float));
            if (!r->betas) return MK_ERR_NOMEM;
            st = mk_stats_load(&stats, s + 10, m);
            if (!st) st = mk_stats_naee_beta(stats, r->betas);
            mk_stats_free(stats);
            r->opts.skip_betas = r->betas;
        } else if (!strncmp(s, "mask:", 5)) {
            free(r->mask);
            r->mask = NULL;
            st = mk_route_mask_load(s + 5, in->n_layer, in->n_expert, &r->mask);
            r->opts.mask = r->mask;
        } else if (!strncmp(s, "zero:", 5)) { /* the experts FILE does not keep are zeroed */
            free(r->zero);
            r->zero = NULL;
            st = mk_route_mask_load(s + 5, in->n_layer, in->n_expert, &r->zero);
            for (int64_t j = 0; !st && j < in->n_layer * in->n_expert; j++) r->zero[j] = !r->zero[j];
            r->opts.zero = r->zero;
        } else {
            st = mk_route_parse(&r->opts, s);
        }
        if (st) return st;
    }
    return mk_ctx_set_route(c, &r->opts);
}

void mk_cli_route_report(const mk_model *m, const mk_ctx *c, FILE *f) {
    const mk_model_info *in = mk_model_get_info(m);
    double sum = 0;
    int64_t n = 0;
    fprintf(f, "experts per token by layer:");
    for (int64_t l = 0; l < in->n_layer; l++) {
        if (!mk_model_layer_is_moe(m, l)) continue;
        double v = mk_ctx_experts_per_token(c, l);
        fprintf(f, " %.2f", v);
        sum += v;
        n++;
    }
    fprintf(f, "; mean %.3f (model k = %lld)\n", n ? sum / (double)n : 0.0, (long long)in->k_active);
}

void mk_cli_route_free(mk_cli_route *r) {
    mk_route_opts_clear(&r->opts);
    free(r->mask);
    free(r->zero);
    free(r->betas);
    memset(r, 0, sizeof *r);
}
