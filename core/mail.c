#include "mail.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/evp.h>

#include "error.h"
#include "utf8.h"
#include "xmalloc.h"

/* RFC 5322 2.1.1: lines SHOULD stay within 78 characters and MUST stay
 * within 998, both without the CRLF. */
#define LINE_SOFT 78
#define LINE_HARD 998
/* Bytes of UTF-8 in one encoded word: 45 bytes are 60 base64 characters,
 * and with "=?UTF-8?B?" and "?=" the word is 72, under RFC 2047's 75. */
#define WORD_BYTES 45
/* A plain word longer than this is not left to a header line. */
#define WORD_MAX 900

/* ---- addresses ----------------------------------------------------------- */

/* RFC 5322's specials and controls, which an unquoted address never has. */
static bool addr_char(unsigned char c) {
  return c > 32 && c < 127 && !strchr("()<>[]:;,\\\"", c);
}

static bool addr_ok(const char *a, size_t len, const char **why) {
  const char *at = memchr(a, '@', len);
  if (len == 0 || !at) {
    *why = "an address needs an @";
    return false;
  }
  if (len > MAIL_ADDRESS_MAX) {
    *why = "the address is longer than 254 characters";
    return false;
  }
  size_t local = (size_t)(at - a), domain = len - local - 1;
  if (local == 0 || local > 64 || domain == 0) {
    *why =
        "the address needs a local part (at most 64 characters) and a "
        "domain";
    return false;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)a[i];
    if (i != local && (!addr_char(c) || c == '@')) {
      *why =
          "the address has a space, a control character, a special "
          "character or a second @ (non-ASCII domains go as A-labels)";
      return false;
    }
  }
  const char *d = at + 1;
  if (d[0] == '.' || d[domain - 1] == '.' || !memchr(d, '.', domain)) {
    /* A dotless domain (user@localhost) is no address a shop mails. */
    *why = "the address needs a dotted domain";
    return false;
  }
  return true;
}

static bool name_ok(const char *s, size_t len, const char **why) {
  if (len > MAIL_NAME_MAX) {
    *why = "the display name is longer than 200 bytes";
    return false;
  }
  if (!utf8_valid((const unsigned char *)s, len)) {
    *why = "the display name is not UTF-8";
    return false;
  }
  for (size_t i = 0; i < len; i++)
    if ((unsigned char)s[i] < 32 || s[i] == 127) {
      *why = "the display name has a control character";
      return false;
    }
  return true;
}

static void trim(const char **s, size_t *len) {
  while (*len && (**s == ' ' || **s == '\t')) (*s)++, (*len)--;
  while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

int mail_parse_address(const char *s, size_t len, MailAddress *out,
                       const char **why) {
  memset(out, 0, sizeof *out);
  trim(&s, &len);
  const char *addr = s, *name = NULL;
  size_t alen = len, nlen = 0;
  if (len && s[len - 1] == '>') {
    const char *lt = NULL;
    for (size_t i = len - 1; i-- > 0;)
      if (s[i] == '<') {
        lt = s + i;
        break;
      }
    if (!lt) {
      *why = "the address has a '>' without its '<'";
      return RESTOCK_EINVAL;
    }
    addr = lt + 1;
    alen = (size_t)(s + len - 1 - addr);
    name = s;
    nlen = (size_t)(lt - s);
    trim(&name, &nlen);
  }
  if (!addr_ok(addr, alen, why)) return RESTOCK_EINVAL;
  char *uname = NULL;
  if (nlen >= 2 && name[0] == '"' && name[nlen - 1] == '"') {
    /* A quoted name: drop the quotes and the backslash escapes. */
    uname = xmalloc(nlen);
    size_t o = 0;
    for (size_t i = 1; i + 1 < nlen; i++) {
      if (name[i] == '\\' && i + 2 < nlen) i++;
      uname[o++] = name[i];
    }
    uname[o] = '\0';
    nlen = o;
  } else if (nlen) {
    uname = xstrndup(name, nlen);
  }
  if (uname && !name_ok(uname, nlen, why)) {
    free(uname);
    return RESTOCK_EINVAL;
  }
  if (uname && !*uname) {
    free(uname);
    uname = NULL;
  }
  out->name = uname;
  out->addr = xstrndup(addr, alen);
  return 0;
}

void mail_address_clear(MailAddress *a) {
  free(a->name);
  free(a->addr);
  a->name = a->addr = NULL;
}

/* ---- header fields --------------------------------------------------------
 */

/* The tokens of one field body: written joined by single spaces, a fold
 * (CRLF and the space) only ever before a non-empty token. */
typedef struct {
  char **items;
  size_t n, cap;
} Tokens;

static void tokens_add(Tokens *t, char *s) {
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 8;
    t->items = xrealloc(t->items, t->cap * sizeof *t->items);
  }
  t->items[t->n++] = s;
}

static void tokens_free(Tokens *t) {
  for (size_t i = 0; i < t->n; i++) free(t->items[i]);
  free(t->items);
  memset(t, 0, sizeof *t);
}

/* Appends "=?UTF-8?B?...?=" words for `len` bytes of UTF-8, each holding
 * whole characters (RFC 2047 5: an encoded word never splits one), the
 * first at most `first` bytes (so that it fits beside the field's name). */
static void encoded_words(const char *s, size_t len, size_t first, Tokens *t) {
  size_t i = 0;
  while (i < len) {
    size_t n = 0, most = i == 0 && first >= 3 ? first : WORD_BYTES;
    while (i + n < len) {
      size_t k = utf8_sequence((const unsigned char *)s + i + n, len - i - n);
      if (k == 0) k = 1; /* checked by the caller; never loop */
      if (n + k > most && n > 0) break;
      n += k;
    }
    unsigned char b64[4 * ((WORD_BYTES + 2) / 3) + 1];
    int b = EVP_EncodeBlock(b64, (const unsigned char *)s + i, (int)n);
    tokens_add(t, xasprintf("=?UTF-8?B?%.*s?=", b, (const char *)b64));
    i += n;
  }
}

/* True for a byte that a plain (unencoded) header value may hold. */
static bool plain_char(unsigned char c) {
  return (c >= 32 && c < 127) || c == '\t';
}

/* Writes "Name: tokens" and its CRLF. Returns 0 or RESTOCK_EINVAL for a
 * line that would pass 998 octets. */
static int write_tokens(Buf *out, const char *name, const Tokens *t,
                        const char **why) {
  size_t start = strlen(name) + 1;
  buf_puts(out, name);
  buf_puts(out, ":");
  size_t col = start;
  for (size_t i = 0; i < t->n; i++) {
    size_t len = strlen(t->items[i]);
    if (len && col > start && col + 1 + len > LINE_SOFT) {
      buf_puts(out, "\r\n");
      col = 0;
    }
    buf_puts(out, " ");
    buf_append(out, t->items[i], len);
    col += 1 + len;
    if (col > LINE_HARD) {
      *why = "a header line would be longer than 998 octets";
      return RESTOCK_EINVAL;
    }
  }
  buf_puts(out, "\r\n");
  return 0;
}

/* Checks an unstructured value: UTF-8, no line breaks or other controls. */
static bool value_ok(const char *v, size_t len, const char **why) {
  if (!utf8_valid((const unsigned char *)v, len)) {
    *why = "a header value is not UTF-8";
    return false;
  }
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)v[i];
    if ((c < 32 && c != '\t') || c == 127) {
      *why = "a header value has a line break or a control character";
      return false;
    }
  }
  return true;
}

int mail_header(Buf *out, const char *name, const char *value, int encode,
                const char **why) {
  size_t len = strlen(value);
  trim(&value, &len);
  if (!value_ok(value, len, why)) return RESTOCK_EINVAL;
  bool plain = true;
  size_t word = 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)value[i];
    if (!plain_char(c)) plain = false;
    word = c == ' ' ? 0 : word + 1;
    if (word > WORD_MAX) plain = false;
  }
  /* "=?" in a plain value could be read back as the start of an encoded
   * word (RFC 2047 6.1), so such a value is encoded too. */
  if (memmem(value, len, "=?", 2)) plain = false;
  if (!plain && !encode) {
    *why =
        "a header value is not printable ASCII (or has a word of more "
        "than 900 octets)";
    return RESTOCK_EINVAL;
  }
  Tokens t = {0};
  if (plain) {
    const char *p = value, *end = value + len;
    while (p <= end) {
      const char *sp = memchr(p, ' ', (size_t)(end - p));
      const char *stop = sp ? sp : end;
      tokens_add(&t, xstrndup(p, (size_t)(stop - p)));
      if (!sp) break;
      p = sp + 1;
    }
  } else {
    /* "Name: " and the word's 12 characters of framing leave this much
     * base64 on the first line, 3 bytes for each 4 characters. */
    size_t used = strlen(name) + 2 + 12;
    size_t first = used < LINE_SOFT ? (LINE_SOFT - used) / 4 * 3 : 0;
    encoded_words(value, len, first < WORD_BYTES ? first : WORD_BYTES, &t);
  }
  int rc = write_tokens(out, name, &t, why);
  tokens_free(&t);
  return rc;
}

/* True for RFC 5322's atext, the characters of an unquoted word. */
static bool atext(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

/* Adds the tokens of one address: its display name (as atoms, one quoted
 * string, or encoded words) and "<addr>", with `tail` (a comma) after. */
static void address_tokens(const MailAddress *a, const char *tail, Tokens *t) {
  if (!a->name) {
    tokens_add(t, xasprintf("%s%s", a->addr, tail));
    return;
  }
  const char *n = a->name;
  size_t len = strlen(n);
  bool atoms = true, ascii = true;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)n[i];
    if (c >= 127) ascii = false;
    if (!atext(c) && c != ' ') atoms = false;
  }
  if (memmem(n, len, "=?", 2)) atoms = false;
  if (!ascii) {
    encoded_words(n, len, WORD_BYTES, t);
  } else if (atoms) {
    const char *p = n, *end = n + len;
    while (p < end) {
      const char *sp = memchr(p, ' ', (size_t)(end - p));
      const char *stop = sp ? sp : end;
      if (stop > p) tokens_add(t, xstrndup(p, (size_t)(stop - p)));
      p = stop + 1;
    }
  } else {
    Buf q = {0};
    buf_puts(&q, "\"");
    for (size_t i = 0; i < len; i++) {
      if (n[i] == '"' || n[i] == '\\') buf_puts(&q, "\\");
      buf_append(&q, n + i, 1);
    }
    buf_puts(&q, "\"");
    tokens_add(t, buf_steal(&q));
  }
  tokens_add(t, xasprintf("<%s>%s", a->addr, tail));
}

static int address_field(Buf *out, const char *name, const MailAddress *a,
                         size_t n, const char **why) {
  Tokens t = {0};
  for (size_t i = 0; i < n; i++)
    address_tokens(&a[i], i + 1 < n ? "," : "", &t);
  int rc = write_tokens(out, name, &t, why);
  tokens_free(&t);
  return rc;
}

int mail_header_name_ok(const char *name) {
  static const char *const own[] = {"from",       "to",           "cc",
                                    "bcc",        "subject",      "date",
                                    "message-id", "mime-version", NULL};
  size_t len = strlen(name);
  if (len == 0 || len > 76) return 0;
  for (size_t i = 0; i < len; i++)
    if (name[i] <= 32 || name[i] >= 127 || name[i] == ':') return 0;
  for (size_t i = 0; own[i]; i++)
    if (strcasecmp(name, own[i]) == 0) return 0;
  if (strncasecmp(name, "content-", 8) == 0) return 0;
  return 1;
}

void mail_date(long long ms, char *out, size_t len) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed",
                                  "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  time_t secs = (time_t)(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  /* Spelled out rather than strftime's %a and %b, which follow the
   * locale. */
  snprintf(out, len, "%s, %02d %s %04d %02d:%02d:%02d +0000",
           days[tm.tm_wday % 7], tm.tm_mday, months[tm.tm_mon % 12],
           tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* ---- bodies -------------------------------------------------------------- */

void mail_qp_encode(const char *s, size_t len, Buf *out) {
  static const char hex[] = "0123456789ABCDEF";
  size_t col = 0;
  bool ended = true; /* the output ends with a line break */
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\r' || c == '\n') {
      if (c == '\r' && i + 1 < len && s[i + 1] == '\n') i++;
      buf_puts(out, "\r\n");
      col = 0;
      ended = true;
      continue;
    }
    /* Whitespace before a line break (or the end) is encoded: transports
     * may strip it (RFC 2045 6.7, rule 3). */
    bool line_end = i + 1 == len || s[i + 1] == '\r' || s[i + 1] == '\n';
    bool literal = (c > 32 && c < 127 && c != '=') ||
                   ((c == ' ' || c == '\t') && !line_end);
    size_t width = literal ? 1 : 3;
    if (col + width > 75) {
      buf_puts(out, "=\r\n"); /* a soft line break */
      col = 0;
    }
    /* A line starting with "." would be eaten by an SMTP server that gets
     * it unstuffed, and one starting with "From " gets a ">" in mbox
     * files: both are encoded. */
    if (col == 0 && literal &&
        (c == '.' ||
         (c == 'F' && len - i >= 5 && memcmp(s + i, "From ", 5) == 0)))
      literal = false, width = 3;
    if (literal) {
      buf_append(out, s + i, 1);
    } else {
      char e[3] = {'=', hex[c >> 4], hex[c & 15]};
      buf_append(out, e, 3);
    }
    col += width;
    ended = false;
  }
  if (!ended) buf_puts(out, "\r\n");
}

static int body_ok(const char *s, size_t len, const char **why) {
  if (!utf8_valid((const unsigned char *)s, len)) {
    *why = "the text and html bodies must be UTF-8";
    return RESTOCK_EINVAL;
  }
  return 0;
}

static void part_header(Buf *out, const char *type) {
  buf_printf(out,
             "Content-Type: %s; charset=UTF-8\r\n"
             "Content-Transfer-Encoding: quoted-printable\r\n\r\n",
             type);
}

static bool message_id_ok(const char *id) {
  size_t len = strlen(id);
  if (len < 5 || len > 250 || id[0] != '<' || id[len - 1] != '>' ||
      !memchr(id, '@', len))
    return false;
  for (size_t i = 1; i + 1 < len; i++)
    if (id[i] <= 32 || id[i] >= 127 || id[i] == '<' || id[i] == '>')
      return false;
  return true;
}

int mail_build(const MailMessage *m, Buf *out, const char **why) {
  if (!m->from || !m->from->addr || m->nto == 0) {
    *why = "a message needs a sender and at least one recipient";
    return RESTOCK_EINVAL;
  }
  if (!m->text && !m->html) {
    *why = "a message needs a text or an html body";
    return RESTOCK_EINVAL;
  }
  if (!m->message_id || !message_id_ok(m->message_id)) {
    *why = "the message id must look like <unique@domain>";
    return RESTOCK_EINVAL;
  }
  if ((m->text && body_ok(m->text, m->text_len, why)) ||
      (m->html && body_ok(m->html, m->html_len, why)))
    return RESTOCK_EINVAL;
  char date[40];
  mail_date(m->date_ms, date, sizeof date);
  buf_printf(out, "Date: %s\r\n", date);
  if (address_field(out, "From", m->from, 1, why) ||
      address_field(out, "To", m->to, m->nto, why))
    return RESTOCK_EINVAL;
  if (m->subject && *m->subject &&
      mail_header(out, "Subject", m->subject, 1, why))
    return RESTOCK_EINVAL;
  buf_printf(out, "Message-ID: %s\r\nMIME-Version: 1.0\r\n", m->message_id);
  for (size_t i = 0; i < m->nheaders; i++) {
    if (!mail_header_name_ok(m->header_names[i])) {
      *why =
          "a header name is not allowed (restock.smtp.send writes From, "
          "To, Subject, Date, Message-ID, MIME-Version and Content-* "
          "itself; names are printable ASCII without ':')";
      return RESTOCK_EINVAL;
    }
    if (mail_header(out, m->header_names[i], m->header_values[i], 1, why))
      return RESTOCK_EINVAL;
  }
  if (m->text && m->html) {
    /* Quoted-printable output never holds "=_", so this boundary cannot
     * occur inside a part (RFC 2045 6.7, RFC 2046 5.1.1). */
    const char *seed = m->boundary_seed ? m->boundary_seed : "";
    buf_printf(out,
               "Content-Type: multipart/alternative;\r\n"
               " boundary=\"=_restockd_%.40s\"\r\n\r\n"
               "This is a message in MIME format: a plain text and an HTML "
               "version.\r\n",
               seed);
    buf_printf(out, "--=_restockd_%.40s\r\n", seed);
    part_header(out, "text/plain");
    mail_qp_encode(m->text, m->text_len, out);
    buf_printf(out, "--=_restockd_%.40s\r\n", seed);
    part_header(out, "text/html");
    mail_qp_encode(m->html, m->html_len, out);
    buf_printf(out, "--=_restockd_%.40s--\r\n", seed);
  } else if (m->text) {
    part_header(out, "text/plain");
    mail_qp_encode(m->text, m->text_len, out);
  } else {
    part_header(out, "text/html");
    mail_qp_encode(m->html, m->html_len, out);
  }
  return 0;
}
