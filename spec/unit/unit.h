/* A minimal unit-test harness. TEST(name) defines a test and registers it
 * before main runs; CHECK* record a failure and carry on. main.c runs every
 * test and prints "unit: N passed, N failed". */
#ifndef RESTOCKD_UNIT_H
#define RESTOCKD_UNIT_H

#include <stdio.h>
#include <string.h>

typedef void (*UnitFn)(void);
void unit_register(const char *name, UnitFn fn);
void unit_fail(const char *file, int line, const char *what);

#define TEST(name)                                                 \
  static void test_##name(void);                                   \
  __attribute__((constructor)) static void register_##name(void) { \
    unit_register(#name, test_##name);                             \
  }                                                                \
  static void test_##name(void)

#define CHECK(cond)                                    \
  do {                                                 \
    if (!(cond)) unit_fail(__FILE__, __LINE__, #cond); \
  } while (0)

#define CHECK_STR(a, b)                                                      \
  do {                                                                       \
    const char *a_ = (a), *b_ = (b);                                         \
    if (!a_ || !b_ || strcmp(a_, b_) != 0) {                                 \
      char msg_[512];                                                        \
      snprintf(msg_, sizeof msg_, "%s == %s (\"%.200s\" vs \"%.200s\")", #a, \
               #b, a_ ? a_ : "(null)", b_ ? b_ : "(null)");                  \
      unit_fail(__FILE__, __LINE__, msg_);                                   \
    }                                                                        \
  } while (0)

#endif
