/* --route options shared by run, eval and profile: collected while parsing arguments, applied
 * to a context once the model is loaded (mask:FILE needs the model's shape). */
#ifndef MK_CLI_ROUTE_H
#define MK_CLI_ROUTE_H

#include "moekit.h"

#include <stdio.h>

#define MK_CLI_MAX_ROUTES 32

typedef struct mk_cli_route {
    const char *specs[MK_CLI_MAX_ROUTES];
    int n;
    mk_route_opts opts;
    uint8_t *mask, *zero;
    float *betas;
} mk_cli_route;

/* Records one spec; false (message printed) if there are too many. */
bool mk_cli_route_add(mk_cli_route *r, const char *spec);
/* Parses the specs (mask:FILE read here) and sets them on the context. */
mk_status mk_cli_route_apply(mk_cli_route *r, const mk_model *m, mk_ctx *c);
/* Prints the average number of experts used per token per MoE layer. */
void mk_cli_route_report(const mk_model *m, const mk_ctx *c, FILE *f);
void mk_cli_route_free(mk_cli_route *r);

#define MK_CLI_ROUTE_HELP                                                                     \
    "  --route SPEC          routing policy, repeatable and composable:\n"                   \
    "                          topk:K         K experts per token instead of the model's k\n" \
    "                          topp:P[:KMAX][:renorm]  fewest experts whose probabilities first exceed\n" \
    "                                         P (at most KMAX), weighted by their raw probabilities as\n" \
    "                                         in Huang et al. 2024; :renorm rescales them to sum to 1\n" \
    "                          skip:BETA      drop a chosen expert whose probability < BETA x the top one's\n" \
    "                          skip:auto:STATS  the same with NAEE's per-layer beta (median p2/p1) from\n" \
    "                                         a stats.json of moekit profile\n" \
    "                          boost:L:E:F    multiply expert E's probability in layer L by F before selection\n" \
    "                          mask:FILE      only the experts kept in FILE (\"kept_experts\", e.g. a\n" \
    "                                         moekit_compression.json): virtual pruning\n" \
    "                          zero:FILE      the experts FILE does not keep are routed as usual but\n" \
    "                                         add nothing (their down_proj zeroed, router unchanged:\n" \
    "                                         the Super Experts paper's removal)\n" \
    "                        chosen weights then follow the model's rule (renormalised if it renormalises),\n" \
    "                        except topp's (raw unless :renorm)\n"

#endif
