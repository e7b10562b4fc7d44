/* moekit quantize: write a model as a GGUF file, quantized to one type. */
#include "args.h"
#include "cli.h"
#include "compress/quant_gguf.h"
#include "moekit.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: moekit quantize -m MODEL --type TYPE -o OUT.gguf\n"
               "Writes MODEL (an HF checkpoint directory or a .gguf file) as a GGUF file with llama.cpp's\n"
               "tensor names and metadata (Mixtral as 'llama', qwen2moe, qwen3moe, olmoe).\n"
               "  -m, --model PATH   model to read\n"
               "  --type TYPE        q8_0, q4_0, q4_k, q6_k, mxfp4, bf16, f16 or f32 (mxfp4: the routed experts\n"
               "                     only, every other matrix q8_0, as llama.cpp's MXFP4_MOE)\n"
               "  -o, --output FILE  GGUF file to write (atomically: temporary file, fsync, rename)\n"
               "Norms, biases and the routers stay F32; a matrix whose rows are not whole blocks of TYPE\n"
               "falls back to Q8_0 (rows a multiple of 32) or F16. The model's tokenizer (tokenizer.json, or the\n"
               "source GGUF's) is written as llama.cpp's tokenizer.ggml.* keys with its chat template.\n");
}

static const struct { const char *name; mk_dtype dt; } types[] = {
    {"q8_0", MK_DT_Q8_0}, {"q4_0", MK_DT_Q4_0}, {"q4_k", MK_DT_Q4_K}, {"q6_k", MK_DT_Q6_K},
    {"mxfp4", MK_DT_MXFP4}, {"bf16", MK_DT_BF16}, {"f16", MK_DT_F16}, {"f32", MK_DT_F32},
};

int mk_cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *out = NULL, *tname = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!(model = mk_arg_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "--type")) { if (!(tname = mk_arg_value(argc, argv, &i))) return 2; }
        else if (!strcmp(a, "-o") || !strcmp(a, "--output")) { if (!(out = mk_arg_value(argc, argv, &i))) return 2; }
        else { fprintf(stderr, "moekit quantize: unknown option '%s' (moekit quantize --help)\n", a); return 2; }
    }
    if (!model || !out || !tname) { fprintf(stderr, "moekit quantize: give -m MODEL, --type TYPE and -o OUT.gguf (moekit quantize --help)\n"); return 2; }
    int ti = -1;
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcasecmp(tname, types[i].name)) ti = (int)i;
    if (ti < 0) { fprintf(stderr, "moekit quantize: --type '%s' is not one of q8_0, q4_0, q4_k, q6_k, mxfp4, bf16, f16, f32\n", tname); return 2; }
    mk_model *m;
    if (mk_model_load(&m, model)) return mk_cli_fail();
    /* general.name: the model directory's (or file's) base name */
    char *copy = strdup(model), *base = copy ? basename(copy) : NULL;
    mk_gguf_write_report rep;
    mk_status st = mk_gguf_write_model(m, types[ti].dt, out, base, &rep);
    free(copy);
    mk_model_free(m);
    if (st) return mk_cli_fail();
    int64_t total = 0;
    for (int d = 0; d < MK_DT_COUNT; d++) total += rep.bytes_by_dtype[d];
    printf("wrote %s: %zu tensors, %.2f MiB", out, rep.n_tensors, (double)total / (1 << 20));
    for (int d = 0; d < MK_DT_COUNT; d++)
        if (rep.bytes_by_dtype[d]) printf(", %s %.2f MiB", mk_dtypes[d].name, (double)rep.bytes_by_dtype[d] / (1 << 20));
    printf("\n");
    const mk_tok_gguf_info *tk = &rep.tokenizer;
    if (strcmp(tk->model, "none"))
        printf("tokenizer: %s%s%s, %zu tokens, %zu merges, %zu chat template%s\n", tk->model, tk->pre[0] ? " pre " : "", tk->pre,
               tk->n_tokens, tk->n_merges, tk->n_templates, tk->n_templates == 1 ? "" : "s");
    else
        printf("tokenizer: none\n");
    if (tk->warning[0]) fprintf(stderr, "moekit quantize: warning: %s\n", tk->warning);
    for (const char *p = rep.fallback; *p;) { /* one note per line of the report */
        const char *nl = strchr(p, '\n');
        int len = nl ? (int)(nl - p) : (int)strlen(p);
        fprintf(stderr, "moekit quantize: note: %.*s\n", len, p);
        p += len + (nl != NULL);
    }
    if (rep.caveat[0]) fprintf(stderr, "moekit quantize: warning: %s\n", rep.caveat);
    return 0;
}
