/* moekit tokenizer API (see src/tokenizer/). */
#ifndef MOEKIT_TOKENIZER_H
#define MOEKIT_TOKENIZER_H
#include "moekit/base.h"
#endif
