/* moekit — a C11 engine and toolkit for Mixture-of-Experts language models.
 *
 * Public API. Every object is an opaque handle created by a mk_<object>_load/new function and
 * released by the matching mk_<object>_free (free(NULL) is a no-op). Functions that can fail
 * return mk_status; on failure a one-line message naming the file and the field is readable
 * with mk_last_error() (thread-local, valid until the next failing call on that thread).
 * Library code never exits or aborts on bad input.
 */
#ifndef MOEKIT_H
#define MOEKIT_H

#include "moekit/base.h"
#include "moekit/chat.h"
#include "moekit/kernels.h"
#include "moekit/model.h"
#include "moekit/synth.h"
#include "moekit/tokenizer.h"

#endif
