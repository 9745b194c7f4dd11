/* Email address validation and normalization, as the subscribe route and
 * the admin routes that look an address up need it: two spellings of one
 * mailbox must give one string, or a shopper is subscribed twice and an
 * erase misses one of them (docs/security.md says why each rule is what a
 * mail system expects).
 *
 * - The local part (before the '@') is put in Unicode NFC and lower-cased
 *   with Unicode's full case mapping (ASCII as before: "Jane" is "jane",
 *   "ÜLI" is "üli"). It must not hold controls, format characters other
 *   than the zero-width joiner and non-joiner, separators, private-use or
 *   unassigned code points.
 * - The domain is mapped by UTS #46 (non-transitional, as browsers do) and
 *   written as IDNA A-labels, all ASCII: "EXÄMPLE.de" and "exämple.DE" are
 *   both "xn--exmple-cua.de". A domain that IDNA2008 refuses (a disallowed
 *   code point, bad Punycode, a bidi-rule violation) is refused. Domains
 *   written in ASCII only keep today's rules (letters, digits, hyphens). */
#ifndef RESTOCKD_EMAIL_H
#define RESTOCKD_EMAIL_H

#include <stdbool.h>
#include <stddef.h>

#include "strlist.h"

/* Longest normalized address, in bytes. */
#define EMAIL_MAX 254
/* Longest input looked at, in bytes (before trimming): an address typed
 * in full-width letters or decomposed may shrink to EMAIL_MAX. */
#define EMAIL_INPUT_MAX 1024

/* Trims ASCII whitespace around `in` (len bytes, not NUL-terminated),
 * normalizes it as above and checks that the result is a plausible address:
 * one '@', a local part of 1 to 64 bytes, a domain of at least two non-empty
 * dot-separated labels of at most 63 bytes, at most EMAIL_MAX bytes in all,
 * well-formed UTF-8, and no spaces, control characters or NUL bytes. On
 * success writes the address into `out` (at least EMAIL_MAX + 1 bytes) and
 * returns 0. On failure returns RESTOCK_EINVAL and, if `why` is not NULL,
 * points it at a static sentence saying what is wrong. Normalizing a normalized
 * address gives it back unchanged. */
int email_normalize(const char *in, size_t len, char *out, const char **why);

/* A list of domains (blocked_email_domains): `list` is comma-separated,
 * spaces around an entry ignored. Each entry is normalized as an address's
 * domain, and `out` gets them sorted, without repeats. Returns 0, or
 * RESTOCK_EINVAL with the entry that is not a domain in `err`. */
int email_domains_compile(const char *list, StrList *out, char *err,
                          size_t errlen);
/* True when the domain of normalized `email` is in `domains` (compiled
 * above) or a subdomain of one: a lookup per label, not a walk. */
bool email_domain_listed(const StrList *domains, const char *email);

#endif
