/* moekit info: what a model is — architecture, experts, parameters, bytes by dtype. */
#include "args.h"
#include "cli.h"
#include "moekit.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: moekit info [-m MODEL] | --config CONFIG.json\n"
               "Prints the architecture, layers, attention and its KV cache bytes per token, experts\n"
               "(routed / shared / k), parameters (total and active per token) and bytes by dtype of a\n"
               "model (an HF checkpoint directory or a GGUF file). With --config, what a config.json\n"
               "describes, without weights (parameters from the architecture's tensor table).\n");
}

static void print_info(const char *what, const mk_model_info *in) {
    printf("model:           %s\n", what);
    printf("architecture:    %s (%s)%s%s\n", in->arch, in->model_type, in->quant_method[0] ? ", weights quantized: " : "", in->quant_method);
    printf("layers:          %lld (%lld MoE, %lld dense)\n", (long long)in->n_layer, (long long)in->n_moe_layers,
           (long long)(in->n_layer - in->n_moe_layers));
    printf("d_model:         %lld\n", (long long)in->d_model);
    if (in->mla)
        printf("attention:       %lld heads, multi-head latent: q/k head %lld (RoPE %lld), v head %lld, latent %lld\n", (long long)in->n_head,
               (long long)in->d_head, (long long)in->qk_rope, (long long)in->v_head, (long long)in->kv_lora_rank);
    else
        printf("attention:       %lld heads, %lld kv heads, head dim %lld%s\n", (long long)in->n_head, (long long)in->n_kv_head, (long long)in->d_head,
               in->attn_sinks ? ", a sink logit per head" : "");
    if (in->sliding_window > 0)
        printf("sliding window:  %lld positions, in %lld of %lld layers\n", (long long)in->sliding_window, (long long)in->n_swa_layers, (long long)in->n_layer);
    if (in->mla)
        printf("KV cache:        %lld bytes/token (f32 latent %lld + RoPE key %lld per layer); expanded K/V would take %lld (%.1fx)\n",
               (long long)in->kv_bytes_token, (long long)in->kv_lora_rank, (long long)in->qk_rope, (long long)in->kv_bytes_token_expanded,
               (double)in->kv_bytes_token_expanded / (double)in->kv_bytes_token);
    else
        printf("KV cache:        %lld bytes/token (f32)\n", (long long)in->kv_bytes_token);
    if (in->rope_longrope)
        printf("rope:            theta %g, LongRoPE: short factors (mscale %.6g) up to %lld positions, long factors (mscale %.6g) for larger contexts\n",
               in->rope_theta, in->short_mscale, (long long)in->longrope_orig, in->long_mscale);
    else if (in->rope_yarn)
        printf("rope:            theta %g, YaRN factor %g over %lld original positions, attention factor %.6g\n", in->rope_theta, in->yarn_factor,
               (long long)in->yarn_orig_ctx, in->rope_attn_factor);
    else
        printf("rope:            theta %g\n", in->rope_theta);
    printf("experts:         %lld routed, %d shared, k = %lld, expert d_ff %lld%s\n", (long long)in->n_expert,
           in->has_shared_expert ? 1 : 0, (long long)in->k_active, (long long)in->d_ff_expert,
           in->sparsemixer ? ", sparsemixer routing" : in->norm_topk ? ", top-k weights renormalised" : "");
    if (in->experts_per_layer) {
        printf("experts/layer:  ");
        for (int64_t l = 0; l < in->n_layer; l++) printf(" %lld", (long long)in->experts_per_layer[l]);
        printf(" (a per-layer model: moekit-only)\n");
    }
    if (in->d_ff_dense && in->n_moe_layers < in->n_layer) printf("dense d_ff:      %lld\n", (long long)in->d_ff_dense);
    if (in->has_shared_expert) printf("shared d_ff:     %lld\n", (long long)in->d_ff_shared);
    printf("vocab:           %lld%s\n", (long long)in->vocab, in->tie_embed ? " (tied embeddings)" : "");
    printf("params total:    %lld\n", (long long)in->params_total);
    printf("params active:   %lld\n", (long long)in->params_active);
}

int mk_cmd_info(int argc, char **argv) {
    const char *dir = NULL, *config = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) {
            if (!(dir = mk_arg_value(argc, argv, &i))) return 2;
        } else if (!strcmp(argv[i], "--config")) {
            if (!(config = mk_arg_value(argc, argv, &i))) return 2;
        } else {
            fprintf(stderr, "moekit info: unknown option '%s'\n", argv[i]);
            return 2;
        }
    }
    if (config && dir) {
        fprintf(stderr, "moekit info: give -m MODEL or --config CONFIG.json, not both\n");
        return 2;
    }
    if (!config && !dir && !(dir = mk_default_model())) {
        fprintf(stderr, "moekit info: no model given (-m DIR) and no default model found\n");
        return 2;
    }
    if (config) {
        mk_model_info ci;
        if (mk_config_info(config, &ci)) return mk_cli_fail();
        print_info(config, &ci);
        return 0;
    }
    mk_model *m;
    if (mk_model_load(&m, dir)) return mk_cli_fail();
    print_info(dir, mk_model_get_info(m));
    const char *names[16];
    int64_t bytes[16];
    size_t n = mk_model_bytes_by_dtype(m, names, bytes, 16);
    for (size_t i = 0; i < n; i++) printf("bytes %-10s %lld\n", names[i], (long long)bytes[i]);
    mk_model_free(m);
    return 0;
}
