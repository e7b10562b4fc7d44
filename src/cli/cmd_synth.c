/* moekit synth: a random-weight HF checkpoint of any supported config, for benchmarks. */
#include "args.h"
#include "cli.h"
#include "moekit.h"

#include <omp.h>
#include <stdio.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: moekit synth --config CONFIG.json [--layers N] [--dtype bf16|f16|f32|mxfp4] [--seed S] -o DIR\n"
            "Writes DIR/config.json and DIR/model.safetensors with random weights (uniform, std 0.02;\n"
            "norms 1, biases 0) for any supported architecture. Written atomically.\n"
            "  --config FILE     an HF config.json (e.g. ../shared/data/real/Qwen3-30B-A3B.config.json)\n"
            "  --layers N        keep only the first N layers (default: all)\n"
            "  --dtype T         bf16 (default), f16, f32, or mxfp4 (GPT-OSS: experts as MXFP4\n"
            "                    blocks/scales as OpenAI ships them, the rest BF16)\n"
            "  --seed S          random seed (default 0)\n"
            "  --std X           weight standard deviation (default 0.02)\n"
            "  -t, --threads N   threads for generating (default: all cores)\n"
            "  -o, --out DIR     output directory\n");
}

int mk_cmd_synth(int argc, char **argv) {
    const char *config = NULL, *out = NULL;
    mk_synth_opts o = {.dtype = "bf16"};
    int64_t layers = 0, seed = 0, threads = 0;
    double std = 0.02;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
#define VAL() if (!(v = mk_arg_value(argc, argv, &i))) return 2
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--config")) { VAL(); config = v; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--out")) { VAL(); out = v; }
        else if (!strcmp(a, "--layers")) { VAL(); if (!mk_arg_int(a, v, 1, 1 << 20, &layers)) return 2; }
        else if (!strcmp(a, "--dtype")) {
            VAL();
            if (strcmp(v, "bf16") && strcmp(v, "f16") && strcmp(v, "f32") && strcmp(v, "mxfp4")) { fprintf(stderr, "moekit synth: --dtype must be bf16, f16, f32 or mxfp4\n"); return 2; }
            o.dtype = v;
        }
        else if (!strcmp(a, "--seed")) { VAL(); if (!mk_arg_int(a, v, 0, INT64_MAX, &seed)) return 2; }
        else if (!strcmp(a, "--std")) { VAL(); if (!mk_arg_float(a, v, 1e-12, 100, &std)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { VAL(); if (!mk_arg_int(a, v, 1, 1024, &threads)) return 2; }
        else { fprintf(stderr, "moekit synth: unknown option '%s' (moekit synth --help)\n", a); return 2; }
#undef VAL
    }
    if (!config || !out) { fprintf(stderr, "moekit synth: give --config CONFIG.json and -o DIR (moekit synth --help)\n"); return 2; }
    if (threads) omp_set_num_threads((int)threads);
    o.n_layer = layers;
    o.seed = (uint64_t)seed;
    o.std = (float)std;
    if (mk_model_synth(config, out, &o)) return mk_cli_fail();
    printf("%s: written\n", out);
    return 0;
}
