/* moekit model API (see src/model/). */
#ifndef MOEKIT_MODEL_H
#define MOEKIT_MODEL_H
#include "moekit/base.h"
#endif
