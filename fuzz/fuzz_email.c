/* email_normalize on any bytes: it never reads or writes out of bounds, and
 * an address it accepts is well-formed UTF-8 of at most EMAIL_MAX bytes,
 * with one '@', an ASCII domain of letters, digits, hyphens and dots, and
 * normalizing it again gives it back unchanged (two spellings of a mailbox
 * must meet in one form, or the store keeps both). */
#include <string.h>

#include "email.h"
#include "fuzz.h"
#include "utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char out[EMAIL_MAX + 1];
  const char *why = NULL;
  if (email_normalize((const char *)data, size, out, &why) != 0) {
    FUZZ_CHECK(why != NULL && out[0] == '\0');
    return 0;
  }
  size_t len = strlen(out);
  FUZZ_CHECK(len > 0 && len <= EMAIL_MAX);
  FUZZ_CHECK(utf8_valid((const unsigned char *)out, len));
  const char *at = strchr(out, '@');
  FUZZ_CHECK(at && at > out && at - out <= 64 && !strchr(at + 1, '@'));
  for (const char *d = at + 1; *d; d++)
    FUZZ_CHECK((*d >= 'a' && *d <= 'z') || (*d >= '0' && *d <= '9') ||
               *d == '-' || *d == '.');
  char again[EMAIL_MAX + 1];
  FUZZ_CHECK(email_normalize(out, len, again, NULL) == 0);
  FUZZ_CHECK(strcmp(out, again) == 0);
  return 0;
}
