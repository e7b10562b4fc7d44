/* Kernel dispatch, for benchmarks: a one-line description of the kernels in use, and the
 * AVX512-BF16 fast path for BF16 weights (activations rounded to bf16; off by default because it
 * costs accuracy). The kernels know no model (DESIGN.md §2): this header is all they export. */
#ifndef MOEKIT_KERNELS_H
#define MOEKIT_KERNELS_H

#include "moekit/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* e.g. "avx512+bf16dot": the instruction set the matrix kernels were dispatched to. */
const char *mk_kernels_describe(void);
/* Turns the AVX512-BF16 fast path on or off; returns whether it is now on (false if the CPU lacks it). */
bool mk_kernels_set_bf16_dot(bool on);

#ifdef __cplusplus
}
#endif
#endif
