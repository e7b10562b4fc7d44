/* moekit chat templates API (see src/tokenizer/). */
#ifndef MOEKIT_CHAT_H
#define MOEKIT_CHAT_H
#include "moekit/base.h"
#endif
