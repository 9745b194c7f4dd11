/* Internet mail messages (RFC 5322, MIME): what restock.smtp.send hands to
 * the SMTP server. Pure: no I/O, no clock or randomness of its own (the
 * caller gives the date and the unique parts), so it is unit-tested and
 * fuzzed on its own.
 *
 * A message is built with CRLF line ends; header fields are folded at 78
 * columns where they have spaces and never pass 998 octets; UTF-8 display
 * names, subjects and other unstructured values become RFC 2047 encoded
 * words; bodies are quoted-printable (lines of at most 76 octets), so no
 * line of the message starts with a dot or "From " and no boundary can
 * appear in a part. SMTP's own dot-stuffing is libcurl's job, not this
 * module's. */
#ifndef RESTOCKD_MAIL_H
#define RESTOCKD_MAIL_H

#include <stddef.h>

#include "buf.h"

/* Longest address accepted (RFC 5321's path limit less the brackets). */
#define MAIL_ADDRESS_MAX 254
/* Longest display name, in bytes. */
#define MAIL_NAME_MAX 200

/* An address with an optional display name. Both strings are owned. */
typedef struct {
  char *name; /* UTF-8 display name, or NULL */
  char *addr; /* local@domain, ASCII */
} MailAddress;

/* Parses "local@domain" or "Display Name <local@domain>" (the name may be
 * quoted, and UTF-8). Returns 0 and fills `out` (free with
 * mail_address_clear), or RESTOCK_EINVAL with a static reason in *why and
 * `out` left empty. */
int mail_parse_address(const char *s, size_t len, MailAddress *out,
                       const char **why);
void mail_address_clear(MailAddress *a);

typedef struct {
  const MailAddress *from;
  const MailAddress *to; /* `nto` of them, at least one */
  size_t nto;
  const char *subject; /* UTF-8; NULL or "" for none */
  const char *text;    /* UTF-8 plain text, `text_len` bytes; may be NULL */
  size_t text_len;
  const char *html; /* UTF-8 HTML, `html_len` bytes; may be NULL */
  size_t html_len;
  /* Extra header fields (List-Unsubscribe, Reply-To, X-...): names are
   * checked, values must not hold line breaks; a value that is not ASCII
   * is written as encoded words. */
  const char *const *header_names;
  const char *const *header_values;
  size_t nheaders;
  long long date_ms; /* the Date field, ms since the epoch (UTC) */
  /* The Message-ID field with its angle brackets. */
  const char *message_id;
  /* A string that makes the MIME boundary unique (hex digits, say). */
  const char *boundary_seed;
} MailMessage;

/* Appends the whole message (header and body, CRLF line ends, ending with
 * CRLF) to `out`. Returns 0, or RESTOCK_EINVAL with a static reason in *why
 * (then `out` may hold part of a message: reset it). At least one of text
 * and html is required; with both the message is multipart/alternative,
 * the plain text first. */
int mail_build(const MailMessage *m, Buf *out, const char **why);

/* Appends `len` bytes as a quoted-printable body (RFC 2045 6.7): any line
 * break in the input (CRLF, LF or CR) becomes CRLF, output lines are at
 * most 76 octets, and a line never starts with "." or "From ". */
void mail_qp_encode(const char *s, size_t len, Buf *out);

/* Appends the header field "Name: value" with its CRLF, the value folded
 * at spaces to keep lines within 78 columns where it can. With `encode`,
 * a value that is not plain printable ASCII (or has a word too long to
 * fold) is written as RFC 2047 encoded words ("=?UTF-8?B?...?=").
 * Returns 0, or RESTOCK_EINVAL with *why for a value that is not UTF-8,
 * holds a control character, or would make a line over 998 octets. */
int mail_header(Buf *out, const char *name, const char *value, int encode,
                const char **why);

/* True when `name` may be the name of a header field a caller adds: 1 to
 * 76 printable ASCII characters without ':' and not one that mail_build
 * writes itself (From, To, Subject, Date, Message-ID, MIME-Version,
 * Content-*, Cc, Bcc). */
int mail_header_name_ok(const char *name);

/* Writes the RFC 5322 date of `ms` (UTC) into `out` (at least 32 bytes),
 * e.g. "Tue, 01 Jul 2025 09:05:00 +0000". */
void mail_date(long long ms, char *out, size_t len);

#endif
