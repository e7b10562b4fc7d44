/* moekit command-line entry point: dispatches to src/cli/cmd_*.c. */
#include "cli.h"
#include "moekit.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    mk_cmd_fn fn;
    const char *help;
} commands[] = {
    /* one line per command: {"name", mk_cmd_name, "one-line help"}, */
    {"run", mk_cmd_run, "generate text from a prompt"},
    {"profile", mk_cmd_profile, "expert routing statistics over calibration data: stats.json and an HTML report"},
    {"prune", mk_cmd_prune, "drop experts by an importance criterion and write a new checkpoint"},
    {"merge", mk_cmd_merge, "fold experts together (M-SMoE) and write a new checkpoint"},
    {"info", mk_cmd_info, "describe a model: architecture, experts, parameters, bytes by dtype"},
    {"eval", mk_cmd_eval, "perplexity, KL divergence vs a base model, multiple-choice accuracy"},
    {"synth", mk_cmd_synth, "write a random-weight model of any supported config (benchmarks)"},
    {"bench", mk_cmd_bench, "prompt and generation speed in tokens/s, like llama-bench"},
    {"tokenize", mk_cmd_tokenize, "encode text with a model's tokenizer and print ids and tokens"},
    {"quantize", mk_cmd_quantize, "write a model as GGUF (llama.cpp names), quantized to q8_0/q4_0/q4_k/q6_k/bf16/f16/f32"},
    {NULL, NULL, NULL},
};

int mk_cli_fail(void) {
    fprintf(stderr, "moekit: %s\n", mk_last_error());
    return 1;
}

int mk_cli_load_model(mk_model **m, const char *dir, bool keep_mapped) {
    if (mk_model_load(m, dir)) return mk_cli_fail();
    size_t bytes = 0;
    if (!keep_mapped && mk_model_make_resident(*m, &bytes))
        fprintf(stderr, "moekit: warning: %s; running from the file mapping\n", mk_last_error());
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "moekit %s — an engine and toolkit for Mixture-of-Experts language models\n\n", MK_VERSION);
    fprintf(f, "usage: moekit <command> [options]   (moekit <command> --help for details)\n\ncommands:\n");
    for (size_t i = 0; commands[i].name; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    /* A write past a file-size limit then fails with EFBIG and a clear message instead of
     * killing the process; writers clean up after themselves. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("moekit %s\n", MK_VERSION);
        return 0;
    }
    for (size_t i = 0; commands[i].name; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "moekit: unknown command '%s' (moekit --help lists them)\n", argv[1]);
    return 2;
}
