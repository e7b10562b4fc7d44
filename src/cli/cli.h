/* Subcommands of the moekit CLI. Each takes the arguments after its name (argv[0] is the
 * command name) and returns the process exit status: 0 success, 1 failure (a one-line message
 * has been printed to stderr), 2 usage error. */
#ifndef MK_CLI_H
#define MK_CLI_H

typedef int (*mk_cmd_fn)(int argc, char **argv);

/* Prints "moekit: <message>" for the library's last error and returns 1. */
int mk_cli_fail(void);

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
