/* Subcommands of the moekit CLI. Each takes the arguments after its name (argv[0] is the
 * command name) and returns the process exit status: 0 success, 1 failure (a one-line message
 * has been printed to stderr), 2 usage error. */
#ifndef MK_CLI_H
#define MK_CLI_H

#include <stdbool.h>

typedef int (*mk_cmd_fn)(int argc, char **argv);

/* Prints "moekit: <message>" for the library's last error and returns 1. */
int mk_cli_fail(void);

/* Loads a model to run it: mk_model_load, then, unless keep_mapped, mk_model_make_resident (the
 * weights in memory on huge pages; a copy that fails leaves the model mapped, with a warning).
 * Returns 0, or 1 after mk_cli_fail. */
struct mk_model;
int mk_cli_load_model(struct mk_model **m, const char *dir, bool keep_mapped);
#define MK_CLI_MMAP_HELP \
    "  --mmap                run the weights from the file's mapping (starts at once, shares the page\n" \
    "                        cache) instead of a copy in memory on huge pages (decode streams faster)\n"

/* one declaration per command */
int mk_cmd_eval(int argc, char **argv);
int mk_cmd_info(int argc, char **argv);
int mk_cmd_run(int argc, char **argv);
int mk_cmd_profile(int argc, char **argv);
int mk_cmd_prune(int argc, char **argv);
int mk_cmd_merge(int argc, char **argv);
int mk_cmd_synth(int argc, char **argv);
int mk_cmd_bench(int argc, char **argv);
int mk_cmd_tokenize(int argc, char **argv);
int mk_cmd_quantize(int argc, char **argv);

#endif
