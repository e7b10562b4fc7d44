/* Minimum-cost perfect assignment (the Hungarian method with potentials, O(n^3); Kuhn 1955,
 * Munkres 1957, in the shortest-augmenting-path form of Jonker & Volgenant). */
#include "compress.h"

#include <math.h>
#include <stdlib.h>

mk_status mk_assign_min(const double *cost, int64_t n, int64_t *perm) {
    if (n <= 0) return MK_OK;
    /* 1-based arrays as in the textbook formulation; row 0 / column 0 are sentinels. */
    double *u = mk_calloc((size_t)n + 1, sizeof *u), *v = mk_calloc((size_t)n + 1, sizeof *v);
    double *minv = mk_malloc(((size_t)n + 1) * sizeof *minv);
    int64_t *p = mk_calloc((size_t)n + 1, sizeof *p), *way = mk_calloc((size_t)n + 1, sizeof *way);
    char *used = mk_malloc((size_t)n + 1);
    if (!u || !v || !minv || !p || !way || !used) {
        free(u); free(v); free(minv); free(p); free(way); free(used);
        return MK_ERR_NOMEM;
    }
    for (int64_t i = 1; i <= n; i++) {
        p[0] = i;
        int64_t j0 = 0;
        for (int64_t j = 0; j <= n; j++) { minv[j] = INFINITY; used[j] = 0; }
        do {
            used[j0] = 1;
            int64_t i0 = p[j0], j1 = 0;
            double delta = INFINITY;
            for (int64_t j = 1; j <= n; j++) {
                if (used[j]) continue;
                double cur = cost[(i0 - 1) * n + (j - 1)] - u[i0] - v[j];
                if (cur < minv[j]) { minv[j] = cur; way[j] = j0; }
                if (minv[j] < delta) { delta = minv[j]; j1 = j; }
            }
            for (int64_t j = 0; j <= n; j++) {
                if (used[j]) { u[p[j]] += delta; v[j] -= delta; }
                else minv[j] -= delta;
            }
            j0 = j1;
        } while (p[j0] != 0);
        do {
            int64_t j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
        } while (j0);
    }
    for (int64_t j = 1; j <= n; j++) perm[p[j] - 1] = j - 1;
    free(u); free(v); free(minv); free(p); free(way); free(used);
    return MK_OK;
}
