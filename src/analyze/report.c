/* The HTML report of a profile: one self-contained file (inline SVG and CSS, no scripts, nothing
 * fetched), sized for a laptop screen. Every heatmap cell is an SVG <rect class="cell"> with a
 * <title> tooltip, so a test can count them in the DOM:
 *   2·L·E (frequency, REAP) + D·L·E (per-dataset frequency, when D > 1) + E² (co-activation)
 *   + E² (transitions, when there are two MoE layers or more). */
#include "analyze/profile_int.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define TOP MK_PROFILE_TOP_TOKENS

void mk_buf_printf(mk_buf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if (b->s && b->len + (size_t)n < b->cap) {
            b->len += (size_t)n;
            return;
        }
        size_t nc = b->cap ? b->cap * 2 : 1 << 16;
        while (nc < b->len + (size_t)n + 1) nc *= 2;
        char *s = realloc(b->s, nc);
        if (!s) {
            b->oom = true;
            return;
        }
        b->s = s;
        b->cap = nc;
    }
}

void mk_buf_puts(mk_buf *b, const char *s) { mk_buf_printf(b, "%s", s); }

void mk_buf_html(mk_buf *b, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': mk_buf_puts(b, "&lt;"); break;
        case '>': mk_buf_puts(b, "&gt;"); break;
        case '&': mk_buf_puts(b, "&amp;"); break;
        case '"': mk_buf_puts(b, "&quot;"); break;
        default:
            if ((unsigned char)*s < 0x20) mk_buf_puts(b, " ");
            else mk_buf_printf(b, "%c", *s);
        }
    }
}

/* viridis, 9 stops */
static void color(double v, char out[8]) {
    static const unsigned char st[9][3] = {{68, 1, 84},    {71, 44, 122},  {59, 81, 139},  {44, 113, 142}, {33, 144, 141},
                                           {39, 173, 129}, {92, 200, 99},  {170, 220, 50}, {253, 231, 37}};
    if (!(v >= 0)) v = 0;
    if (v > 1) v = 1;
    double x = v * 8;
    int i = (int)x;
    if (i >= 8) i = 7;
    double f = x - i;
    int r = (int)lround(st[i][0] + f * (st[i + 1][0] - st[i][0]));
    int g = (int)lround(st[i][1] + f * (st[i + 1][1] - st[i][1]));
    int bl = (int)lround(st[i][2] + f * (st[i + 1][2] - st[i][2]));
    snprintf(out, 8, "#%02x%02x%02x", r, g, bl);
}

typedef struct hm {
    const char *title;       /* drawn above */
    const char *row_label;   /* e.g. "layer" */
    const char *col_label;   /* e.g. "expert" */
    const int64_t *row_names;/* (rows) numbers shown for rows */
    int64_t rows, cols;
    const double *v;         /* (rows, cols) */
    const char *fmt;         /* value format in tooltips */
    double cw, ch;           /* cell size, px */
    bool sqrt_scale;
} hm;

static void heatmap(mk_buf *b, const hm *h) {
    double vmax = 0;
    for (int64_t i = 0; i < h->rows * h->cols; i++)
        if (isfinite(h->v[i]) && h->v[i] > vmax) vmax = h->v[i];
    const double left = 72, top = 34, W = left + h->cols * h->cw + 8, H = top + h->rows * h->ch + 34;
    mk_buf_printf(b, "<figure class=\"hm\"><figcaption>");
    mk_buf_html(b, h->title);
    mk_buf_printf(b, "</figcaption><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" role=\"img\">", W, H, W, H);
    /* column ticks: about every 40 px */
    int64_t cstep = (int64_t)ceil(40.0 / h->cw);
    if (cstep < 1) cstep = 1;
    for (int64_t j = 0; j < h->cols; j += cstep)
        mk_buf_printf(b, "<text class=\"tick\" x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%lld</text>", left + (j + 0.5) * h->cw, top - 6, (long long)j);
    int64_t rstep = (int64_t)ceil(14.0 / h->ch);
    if (rstep < 1) rstep = 1;
    for (int64_t i = 0; i < h->rows; i += rstep)
        mk_buf_printf(b, "<text class=\"tick\" x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\" dominant-baseline=\"middle\">%lld</text>", left - 4,
                      top + (i + 0.5) * h->ch, (long long)(h->row_names ? h->row_names[i] : i));
    mk_buf_printf(b, "<text class=\"axis\" x=\"%.0f\" y=\"12\">%s →</text>", left, h->col_label);
    mk_buf_printf(b, "<text class=\"axis\" x=\"2\" y=\"%.0f\">%s ↓</text>", top - 6, h->row_label);
    for (int64_t i = 0; i < h->rows; i++)
        for (int64_t j = 0; j < h->cols; j++) {
            double v = h->v[i * h->cols + j], f = vmax > 0 ? v / vmax : 0;
            if (h->sqrt_scale) f = sqrt(f);
            char c[8];
            color(f, c);
            mk_buf_printf(b, "<rect class=\"cell\" x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>%s %lld, %s %lld: ",
                          left + j * h->cw, top + i * h->ch, h->cw, h->ch, c, h->row_label,
                          (long long)(h->row_names ? h->row_names[i] : i), h->col_label, (long long)j);
            mk_buf_printf(b, h->fmt, v);
            mk_buf_puts(b, "</title></rect>");
        }
    /* legend */
    const double ly = top + h->rows * h->ch + 10, lw = fmin(200, h->cols * h->cw);
    for (int k = 0; k < 20; k++) {
        char c[8];
        color(k / 19.0, c);
        mk_buf_printf(b, "<rect x=\"%.1f\" y=\"%.0f\" width=\"%.1f\" height=\"10\" fill=\"%s\"/>", left + k * lw / 20, ly, lw / 20 + 0.5, c);
    }
    mk_buf_printf(b, "<text class=\"tick\" x=\"%.0f\" y=\"%.0f\">0</text>", left, ly + 22);
    mk_buf_printf(b, "<text class=\"tick\" x=\"%.0f\" y=\"%.0f\" text-anchor=\"end\">", left + lw, ly + 22);
    mk_buf_printf(b, h->fmt, vmax);
    mk_buf_printf(b, "%s</text></svg></figure>\n", h->sqrt_scale ? " (√ scale)" : "");
}

static double fit(double avail, int64_t n, double lo, double hi) {
    double c = avail / (double)n;
    return c < lo ? lo : c > hi ? hi : c;
}

static void grid_of(const mk_profile *p, size_t slot, bool reap, double *out) {
    for (int64_t li = 0; li < p->n_moe; li++) {
        int64_t T = p->ntok[slot * (size_t)p->n_moe + (size_t)li];
        for (int64_t e = 0; e < p->E; e++) {
            const mk_expert_stats *x = mk_prof_ex(p, slot, li, e);
            out[li * p->E + e] = reap ? (x->count ? x->reap_sum / (double)x->count : 0) : (T ? (double)x->count / (double)T : 0);
        }
    }
}

static void token_text(mk_buf *b, const mk_profile *p, int64_t g, mk_decode_fn decode, void *du) {
    if (g < 0) { mk_buf_puts(b, "–"); return; }
    size_t ds, seq, pos;
    mk_prof_locate(p, (size_t)g, &ds, &seq, &pos);
    size_t first = seq;
    while (first > 0 && p->seq_ds[first - 1] == p->seq_ds[seq]) first--;
    mk_buf_html(b, p->ds_name[ds]);
    mk_buf_printf(b, " seq %zu pos %zu, id %d", seq - first, pos, p->tokens[g]);
    char t[128];
    if (decode && decode(du, p->tokens[g], t, sizeof t)) {
        mk_buf_puts(b, " “");
        mk_buf_html(b, t);
        mk_buf_puts(b, "”");
    }
}

static mk_status build(const mk_profile *p, const mk_profile_run_info *run, mk_decode_fn decode, void *du,
                       int64_t report_layer, mk_buf *b) {
    const mk_model_info *in = mk_model_get_info(p->m);
    const int64_t L = p->n_moe, E = p->E;
    const size_t D = p->n_ds;
    /* which MoE layer to detail */
    int64_t sel = -1;
    if (report_layer >= 0) {
        if (report_layer >= p->n_layer || p->moe_index[report_layer] < 0)
            return mk_err(MK_ERR_ARG, "--report-layer %lld is not a MoE layer of this model", (long long)report_layer);
        sel = p->moe_index[report_layer];
    } else if (D > 1) {
        double best = -1;
        for (int64_t li = 0; li < L; li++) {
            double s = 0;
            for (size_t a = 0; a < D; a++)
                for (size_t c = a + 1; c < D; c++) s += mk_prof_js(p, a, c, li);
            if (s > best + 1e-15) { best = s; sel = li; }
        }
    }
    if (sel < 0) sel = L / 2;
    double *v = mk_malloc((size_t)(L * E + E * E) * sizeof(double) + 8);
    if (!v) return MK_ERR_NOMEM;

    mk_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
                   "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>moekit profile: ");
    mk_buf_html(b, run && run->model_dir ? run->model_dir : in->arch);
    mk_buf_puts(b, "</title>\n<style>\n"
                   "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0 auto;max-width:1240px;padding:12px 20px;color:#222;background:#fff}\n"
                   "h1{font-size:22px;margin:8px 0}h2{font-size:18px;margin:26px 0 8px;border-bottom:1px solid #ddd;padding-bottom:3px}\n"
                   "table{border-collapse:collapse;margin:6px 0;font-variant-numeric:tabular-nums}td,th{border:1px solid #ddd;padding:2px 7px;text-align:right}\n"
                   "th{background:#f4f4f4}td.l,th.l{text-align:left}.note{color:#666;font-size:13px}\n"
                   "figure.hm{display:inline-block;margin:4px 14px 8px 0;vertical-align:top}figcaption{font-weight:600;margin-bottom:2px}\n"
                   ".row{display:flex;flex-wrap:wrap;gap:4px}svg text{font:10px sans-serif;fill:#444}svg text.axis{font-size:11px;fill:#222}\n"
                   "details{margin:6px 0}summary{cursor:pointer;font-weight:600}.scroll{overflow-x:auto;max-height:420px}\n"
                   "</style></head><body>\n<h1>Expert routing profile</h1>\n");
    mk_buf_puts(b, "<p>Model <b>");
    mk_buf_html(b, run && run->model_dir ? run->model_dir : "");
    mk_buf_printf(b, "</b> (%s): %lld layers (%lld MoE), %lld experts, top-%lld routing, d_model %lld.", in->arch, (long long)in->n_layer,
                  (long long)L, (long long)E, (long long)p->K, (long long)in->d_model);
    if (run)
        mk_buf_printf(b, " %zu tokens, sequences of at most %zu tokens, %s, %.2f s.", p->n_tok, run->ctx,
                      run->streamed ? "layer-streamed" : "sequence by sequence", run->seconds);
    mk_buf_puts(b, "</p>\n<table><tr><th class=l>dataset</th><th class=l>file</th><th>tokens</th><th>sequences</th></tr>\n");
    for (size_t d = 0; d < D; d++) {
        mk_buf_puts(b, "<tr><td class=l>");
        mk_buf_html(b, p->ds_name[d]);
        mk_buf_puts(b, "</td><td class=l>");
        mk_buf_html(b, p->ds_path[d]);
        mk_buf_printf(b, "</td><td>%zu</td><td>%zu</td></tr>\n", p->ds_tokens[d], p->ds_seqs[d]);
    }
    mk_buf_puts(b, "</table>\n");

    /* 1. layer × expert heatmaps */
    const double cw = fit(500, E, 3, 22), ch = fit(360, L, 4, 20);
    mk_buf_puts(b, "<h2>Expert usage, all data</h2>\n<p class=note>Frequency = share of tokens routed to the expert (a row sums to k). "
                   "REAP = mean over routed tokens of gate × ‖expert output‖₂. Hover a cell for its value.</p><div class=row>\n");
    grid_of(p, D, false, v);
    heatmap(b, &(hm){"Frequency (layer × expert)", "layer", "expert", p->moe_layer, L, E, v, "%.4f", cw, ch, false});
    grid_of(p, D, true, v);
    heatmap(b, &(hm){"REAP score (layer × expert)", "layer", "expert", p->moe_layer, L, E, v, "%.4g", cw, ch, false});
    mk_buf_puts(b, "</div>\n");

    /* 2. per dataset */
    if (D > 1) {
        const double pcw = fit(1180.0 / (double)(D < 3 ? D : 3) - 100, E, 2, 14), pch = fit(260, L, 3, 14);
        mk_buf_puts(b, "<h2>Expert frequency per dataset</h2>\n<div class=row>\n");
        for (size_t d = 0; d < D; d++) {
            grid_of(p, d, false, v);
            char t[200];
            snprintf(t, sizeof t, "%s", p->ds_name[d]);
            heatmap(b, &(hm){t, "layer", "expert", p->moe_layer, L, E, v, "%.4f", pcw, pch, false});
        }
        mk_buf_puts(b, "</div>\n");
    }

    /* 3. super experts and largest outliers */
    mk_super_expert *se = NULL;
    size_t nse = 0;
    int64_t incl = 0;
    double p995 = 0, fl = 0;
    if (mk_prof_super_experts(p, &se, &nse, &incl, &p995, &fl)) { free(v); return MK_ERR_NOMEM; }
    mk_buf_printf(b, "<h2>Super experts</h2>\n<p class=note>Rule (Su et al. 2025): max |down_proj output| over all routed tokens above the "
                     "99.5th percentile of the per-expert maxima (%.4g) and above ⌊global max / 10⌋ (%.4g), in layers &lt; %lld (75%%). "
                     "Found: %zu.</p>\n",
                  p995, fl, (long long)incl, nse);
    mk_buf_puts(b, "<table><tr><th>layer</th><th>expert</th><th>max |out|</th><th>channel</th><th class=l>token</th></tr>\n");
    for (size_t i = 0; i < nse; i++) {
        const mk_expert_stats *x = mk_prof_ex(p, D, se[i].li, se[i].e);
        mk_buf_printf(b, "<tr><td>%lld</td><td>%lld</td><td>%.5g</td><td>%lld</td><td class=l>", (long long)p->moe_layer[se[i].li],
                      (long long)se[i].e, se[i].value, (long long)x->out_channel);
        token_text(b, p, x->out_token, decode, du);
        mk_buf_puts(b, "</td></tr>\n");
    }
    if (!nse) mk_buf_puts(b, "<tr><td colspan=5 class=l>none</td></tr>\n");
    mk_buf_puts(b, "</table>\n");
    free(se);
    /* ten largest outliers, any layer */
    mk_buf_puts(b, "<details><summary>The ten largest max |down_proj output| values</summary><table><tr><th>layer</th><th>expert</th>"
                   "<th>max |out|</th><th>channel</th><th class=l>token</th></tr>\n");
    {
        int64_t bi[10];
        int nb = 0;
        for (int64_t i = 0; i < L * E; i++) {
            const mk_expert_stats *x = mk_prof_ex(p, D, i / E, i % E);
            if (!x->count) continue;
            int pos = nb;
            while (pos > 0 && mk_prof_ex(p, D, bi[pos - 1] / E, bi[pos - 1] % E)->out_absmax < x->out_absmax) pos--;
            if (pos >= 10) continue;
            for (int k = (nb < 10 ? nb : 9); k > pos; k--) bi[k] = bi[k - 1];
            bi[pos] = i;
            if (nb < 10) nb++;
        }
        for (int k = 0; k < nb; k++) {
            const mk_expert_stats *x = mk_prof_ex(p, D, bi[k] / E, bi[k] % E);
            mk_buf_printf(b, "<tr><td>%lld</td><td>%lld</td><td>%.5g</td><td>%lld</td><td class=l>", (long long)p->moe_layer[bi[k] / E],
                          (long long)(bi[k] % E), x->out_absmax, (long long)x->out_channel);
            token_text(b, p, x->out_token, decode, du);
            mk_buf_puts(b, "</td></tr>\n");
        }
    }
    mk_buf_puts(b, "</table></details>\n");

    /* 4. co-activation and transitions of the selected layer */
    const double ccw = fit(440, E, 3, 22);
    mk_buf_printf(b, "<h2>Layer %lld in detail</h2>\n<p class=note>Co-activation: tokens routed to both experts (diagonal: to the expert). "
                     "Transition: tokens routed to expert i at this layer and expert j at the next MoE layer. "
                     "Choose another layer with <code>--report-layer</code>.</p><div class=row>\n",
                  (long long)p->moe_layer[sel]);
    for (int64_t i = 0; i < E * E; i++) v[i] = (double)p->coact[(size_t)sel * (size_t)(E * E) + (size_t)i];
    char t[160];
    snprintf(t, sizeof t, "Co-activation, layer %lld", (long long)p->moe_layer[sel]);
    heatmap(b, &(hm){t, "expert", "expert", NULL, E, E, v, "%.0f", ccw, ccw, true});
    if (L > 1) {
        int64_t a = sel < L - 1 ? sel : L - 2;
        for (int64_t i = 0; i < E * E; i++) v[i] = (double)p->trans[(size_t)a * (size_t)(E * E) + (size_t)i];
        snprintf(t, sizeof t, "Transition, layer %lld → %lld", (long long)p->moe_layer[a], (long long)p->moe_layer[a + 1]);
        char rl[40], cl[40];
        snprintf(rl, sizeof rl, "expert @%lld", (long long)p->moe_layer[a]);
        snprintf(cl, sizeof cl, "expert @%lld", (long long)p->moe_layer[a + 1]);
        heatmap(b, &(hm){t, rl, cl, NULL, E, E, v, "%.0f", ccw, ccw, true});
    }
    mk_buf_puts(b, "</div>\n");

    /* 5. per-layer table: entropy, JS */
    mk_buf_puts(b, "<h2>Per layer</h2>\n<p class=note>Entropy: mean over tokens of the entropy (nats) of the router's full softmax; "
                   "JS: Jensen–Shannon divergence (bits, 0–1) between two datasets' expert-usage histograms.</p>\n<div class=scroll><table><tr><th>layer</th><th>entropy (all)</th>");
    for (size_t d = 0; D > 1 && d < D; d++) {
        mk_buf_puts(b, "<th>entropy ");
        mk_buf_html(b, p->ds_name[d]);
        mk_buf_puts(b, "</th>");
    }
    for (size_t a = 0; a < D; a++)
        for (size_t c = a + 1; c < D; c++) {
            mk_buf_puts(b, "<th>JS ");
            mk_buf_html(b, p->ds_name[a]);
            mk_buf_puts(b, " / ");
            mk_buf_html(b, p->ds_name[c]);
            mk_buf_puts(b, "</th>");
        }
    mk_buf_puts(b, "</tr>\n");
    for (int64_t li = 0; li < L; li++) {
        mk_buf_printf(b, "<tr><td>%lld</td>", (long long)p->moe_layer[li]);
        for (size_t k = 0; k <= (D > 1 ? D : 0); k++) {
            size_t sl = k == 0 ? D : k - 1;   /* all data first, then each dataset */
            int64_t T = p->ntok[sl * (size_t)L + (size_t)li];
            mk_buf_printf(b, "<td>%.4f</td>", T ? p->ent_sum[sl * (size_t)L + (size_t)li] / (double)T : 0);
        }
        for (size_t a = 0; a < D; a++)
            for (size_t c = a + 1; c < D; c++) mk_buf_printf(b, "<td>%.4f</td>", mk_prof_js(p, a, c, li));
        mk_buf_puts(b, "</tr>\n");
    }
    mk_buf_puts(b, "</table></div>\n");

    /* 6. dataset-specific experts */
    if (D > 1) {
        mk_buf_puts(b, "<h2>Most dataset-specific experts</h2>\n<p class=note>Share of the dataset's routing at that layer minus the share "
                       "of the other datasets' routing.</p><div class=row>\n");
        spec_item items[10];
        for (size_t d = 0; d < D; d++) {
            size_t m = mk_prof_specific(p, d, items, 10);
            mk_buf_puts(b, "<table><tr><th colspan=4 class=l>");
            mk_buf_html(b, p->ds_name[d]);
            mk_buf_puts(b, "</th></tr><tr><th>layer</th><th>expert</th><th>share</th><th>others</th></tr>\n");
            for (size_t i = 0; i < m; i++)
                mk_buf_printf(b, "<tr><td>%lld</td><td>%lld</td><td>%.4f</td><td>%.4f</td></tr>\n", (long long)p->moe_layer[items[i].li],
                              (long long)items[i].e, items[i].pd, items[i].prest);
            mk_buf_puts(b, "</table>\n");
        }
        mk_buf_puts(b, "</div>\n");
    }

    /* 7. the numbers */
    mk_buf_puts(b, "<h2>The numbers</h2>\n");
    const char *names[2] = {"Frequency", "REAP score"};
    for (int k = 0; k < 2; k++) {
        grid_of(p, D, k == 1, v);
        mk_buf_printf(b, "<details><summary>%s, layer × expert</summary><div class=scroll><table><tr><th>layer</th>", names[k]);
        for (int64_t e = 0; e < E; e++) mk_buf_printf(b, "<th>%lld</th>", (long long)e);
        mk_buf_puts(b, "</tr>\n");
        for (int64_t li = 0; li < L; li++) {
            mk_buf_printf(b, "<tr><th>%lld</th>", (long long)p->moe_layer[li]);
            for (int64_t e = 0; e < E; e++) mk_buf_printf(b, k ? "<td>%.4g</td>" : "<td>%.4f</td>", v[li * E + e]);
            mk_buf_puts(b, "</tr>\n");
        }
        mk_buf_puts(b, "</table></div></details>\n");
    }
    /* top tokens of the selected layer */
    int32_t *ids = mk_malloc((size_t)E * TOP * sizeof *ids);
    int64_t *cnt = mk_malloc((size_t)E * TOP * sizeof *cnt);
    int *nn = mk_malloc((size_t)E * sizeof *nn);
    if (ids && cnt && nn) {
        mk_prof_top_tokens(p, sel, ids, cnt, nn);
        mk_buf_printf(b, "<details><summary>Most frequent tokens per expert, layer %lld</summary><div class=scroll><table>"
                         "<tr><th>expert</th><th class=l>tokens (count)</th></tr>\n", (long long)p->moe_layer[sel]);
        for (int64_t e = 0; e < E; e++) {
            mk_buf_printf(b, "<tr><td>%lld</td><td class=l>", (long long)e);
            for (int i = 0; i < nn[e]; i++) {
                char tt[128];
                int32_t id = ids[(size_t)e * TOP + (size_t)i];
                if (decode && decode(du, id, tt, sizeof tt)) {
                    mk_buf_puts(b, "“");
                    mk_buf_html(b, tt);
                    mk_buf_printf(b, "”<sub>%d</sub>", id);
                } else {
                    mk_buf_printf(b, "%d", id);
                }
                mk_buf_printf(b, " (%lld)%s", (long long)cnt[(size_t)e * TOP + (size_t)i], i + 1 < nn[e] ? ", " : "");
            }
            mk_buf_puts(b, "</td></tr>\n");
        }
        mk_buf_puts(b, "</table></div></details>\n");
    }
    free(ids);
    free(cnt);
    free(nn);
    mk_buf_printf(b, "<p class=note>moekit %s — stats.json schema version %d (docs/stats-schema.md).</p>\n</body></html>\n", MK_VERSION,
                  MK_PROFILE_SCHEMA_VERSION);
    free(v);
    return b->oom ? mk_err(MK_ERR_NOMEM, "report: out of memory") : MK_OK;
}

mk_status mk_profile_write_html(const mk_profile *p, const mk_profile_run_info *run, mk_decode_fn decode,
                                void *decode_user, int64_t report_layer, const char *path) {
    if (mk_profile_status(p)) return p->st;
    mk_buf b = {0};
    mk_status st = build(p, run, decode, decode_user, report_layer, &b);
    if (!st) st = mk_prof_write_atomic(path, b.s, b.len);
    free(b.s);
    return st;
}
