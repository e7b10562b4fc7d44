/* Expert selection for pruning: scores → kept experts under a layer or global budget. */
#include "compress.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct cand {
    double v;
    int64_t l, e;
} cand;

static int by_value_desc(const void *a, const void *b) {
    const cand *x = a, *y = b;
    if (x->v != y->v) return x->v > y->v ? -1 : 1;
    if (x->l != y->l) return x->l < y->l ? -1 : 1;
    return x->e < y->e ? -1 : (x->e > y->e);
}

mk_status mk_prune_select(const mk_model *m, const double *scores, int64_t keep_n, mk_budget budget, int64_t min_keep,
                          const uint8_t *protect, uint8_t *keep) {
    const int64_t L = m->cfg.n_layer, E = m->cfg.n_expert;
    if (keep_n < 1 || keep_n > E) return mk_err(MK_ERR_ARG, "prune: keeping %lld experts per layer is not possible with %lld experts", (long long)keep_n, (long long)E);
    if (keep_n < min_keep) return mk_err(MK_ERR_ARG, "prune: keeping %lld experts per layer is fewer than the %lld each token is routed to (k)", (long long)keep_n, (long long)min_keep);
    memset(keep, 0, (size_t)(L * E));
    cand *c = mk_malloc((size_t)E * (size_t)L * sizeof *c);
    if (!c) return MK_ERR_NOMEM;
    int64_t n_moe = 0;
    for (int64_t l = 0; l < L; l++) {
        if (!m->layers[l].is_moe) {
            memset(keep + l * E, 1, (size_t)E);
            continue;
        }
        n_moe++;
        int64_t prot = 0;
        for (int64_t e = 0; e < E; e++) prot += protect && protect[l * E + e];
        if (prot > keep_n) {
            free(c);
            return mk_err(MK_ERR_ARG, "prune: layer %lld has %lld protected (super) experts, more than the %lld kept", (long long)l, (long long)prot, (long long)keep_n);
        }
    }
    /* Group-limited routing (DeepSeek's n_group): every group keeps keep_n / G experts, so the kept
     * experts, renumbered in order, form G equal groups again and the pruned model routes exactly as
     * the original with the dropped experts masked. */
    const int64_t G = m->cfg.n_group > 1 ? m->cfg.n_group : 1, per = E / G;
    if (G > 1 && budget != MK_BUDGET_LAYER) {
        free(c);
        return mk_err(MK_ERR_ARG, "prune: %s routes within %lld expert groups, which a global budget would leave unequal; use --budget layer", m->cfg.arch_name, (long long)G);
    }
    if (G > 1 && (keep_n % G || (keep_n / G) * m->cfg.topk_group < m->cfg.k_active)) {
        free(c);
        return mk_err(MK_ERR_ARG, "prune: %s routes within %lld groups of %lld experts (%lld searched per token, k = %lld): keep a multiple of %lld with at least %lld per group",
                      m->cfg.arch_name, (long long)G, (long long)per, (long long)m->cfg.topk_group, (long long)m->cfg.k_active, (long long)G,
                      (long long)((m->cfg.k_active + m->cfg.topk_group - 1) / m->cfg.topk_group));
    }
    if (budget == MK_BUDGET_LAYER) {
        for (int64_t l = 0; l < L; l++) {
            if (!m->layers[l].is_moe) continue;
            for (int64_t g = 0; g < G; g++) {
                cand *cg = c + g * per;
                int64_t prot = 0;
                for (int64_t e = g * per; e < (g + 1) * per; e++) {
                    cg[e - g * per] = (cand){.v = protect && protect[l * E + e] ? INFINITY : scores[l * E + e], .l = l, .e = e};
                    prot += protect && protect[l * E + e];
                }
                if (prot > keep_n / G) {
                    free(c);
                    return mk_err(MK_ERR_ARG, "prune: layer %lld group %lld has %lld protected (super) experts, more than the %lld it keeps", (long long)l, (long long)g,
                                  (long long)prot, (long long)(keep_n / G));
                }
                qsort(cg, (size_t)per, sizeof *cg, by_value_desc);
                for (int64_t i = 0; i < keep_n / G; i++) keep[l * E + cg[i].e] = 1;
            }
        }
    } else {
        /* Every layer first keeps its min_keep best (and protected) experts; the rest of the
         * budget goes to the best remaining experts across layers by share of layer score. */
        int64_t total = keep_n * n_moe, used = 0, nc = 0;
        for (int64_t l = 0; l < L; l++) {
            if (!m->layers[l].is_moe) continue;
            double sum = 0;
            for (int64_t e = 0; e < E; e++) sum += fmax(scores[l * E + e], 0);
            cand *row = c + nc;
            for (int64_t e = 0; e < E; e++) {
                row[e].v = protect && protect[l * E + e] ? INFINITY : (sum > 0 ? fmax(scores[l * E + e], 0) / sum : 0);
                row[e].l = l;
                row[e].e = e;
            }
            qsort(row, (size_t)E, sizeof *row, by_value_desc);
            for (int64_t i = 0; i < E; i++)
                if (i < min_keep || row[i].v == INFINITY) {
                    keep[l * E + row[i].e] = 1;
                    used++;
                }
            nc += E;
        }
        if (used > total) {
            free(c);
            return mk_err(MK_ERR_ARG, "prune: the global budget of %lld experts is below what the layers must keep (%lld)", (long long)total, (long long)used);
        }
        qsort(c, (size_t)nc, sizeof *c, by_value_desc);
        for (int64_t i = 0; i < nc && used < total; i++)
            if (!keep[c[i].l * E + c[i].e]) {
                keep[c[i].l * E + c[i].e] = 1;
                used++;
            }
    }
    free(c);
    return MK_OK;
}
