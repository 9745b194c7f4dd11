/* UTF-8 checks shared by email validation and JSON log lines. */
#ifndef RESTOCKD_UTF8_H
#define RESTOCKD_UTF8_H

#include <stddef.h>

/* The length (1 to 4) of the well-formed UTF-8 sequence that starts `s`
 * (`len` bytes available), or 0 if none does: a stray continuation byte, a
 * sequence cut short, an overlong form, a surrogate, or past U+10FFFF. */
size_t utf8_sequence(const unsigned char *s, size_t len);
/* True when all `len` bytes are well-formed UTF-8. */
int utf8_valid(const unsigned char *s, size_t len);

#endif
