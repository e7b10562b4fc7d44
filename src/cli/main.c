#include "moekit.h"
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--version") == 0) { printf("moekit %s\n", MK_VERSION); return 0; }
    fprintf(stderr, "usage: moekit <command> ...\n");
    return 2;
}
