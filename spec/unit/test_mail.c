/* core/mail.c and url_encode: addresses, encoded words, folding,
 * quoted-printable, whole messages. */
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "mail.h"
#include "unit.h"
#include "url.h"

static char *qp(const char *s) {
  Buf b = {0};
  mail_qp_encode(s, strlen(s), &b);
  return b.data ? buf_steal(&b) : strdup("");
}

static char *header(const char *name, const char *value, int encode,
                    int *rc) {
  Buf b = {0};
  const char *why = NULL;
  *rc = mail_header(&b, name, value, encode, &why);
  return b.data ? buf_steal(&b) : strdup("");
}

TEST(mail_parse_address_forms) {
  MailAddress a;
  const char *why = NULL;
  CHECK(mail_parse_address("shop@example.com", 16, &a, &why) == 0);
  CHECK(a.name == NULL);
  CHECK_STR(a.addr, "shop@example.com");
  mail_address_clear(&a);
  const char *s = "  \"Shop, \\\"Inc\\\"\" <shop@example.com> ";
  CHECK(mail_parse_address(s, strlen(s), &a, &why) == 0);
  CHECK_STR(a.name, "Shop, \"Inc\"");
  CHECK_STR(a.addr, "shop@example.com");
  mail_address_clear(&a);
  s = "Ünï Shop <shop@example.com>";
  CHECK(mail_parse_address(s, strlen(s), &a, &why) == 0);
  CHECK_STR(a.name, "Ünï Shop");
  mail_address_clear(&a);
  const char *bad[] = {"", "shop", "shop@", "@example.com", "a b@example.com",
                       "shop@localhost", "x <shop@example.com",
                       "Name\r\nBcc: x <a@example.com>", "a@b@example.com",
                       "<a,b@example.com>"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    CHECK(mail_parse_address(bad[i], strlen(bad[i]), &a, &why) != 0);
    CHECK(a.addr == NULL);
  }
}

TEST(mail_qp_rules) {
  char *s = qp("caf\xc3\xa9 = 1\n.dot\nFrom me\ntrail \n");
  CHECK_STR(s, "caf=C3=A9 =3D 1\r\n=2Edot\r\n=46rom me\r\ntrail=20\r\n");
  free(s);
  /* Soft breaks keep lines within 76 octets, never splitting =XX. */
  char in[300];
  memset(in, '=', sizeof in - 1);
  in[sizeof in - 1] = '\0';
  s = qp(in);
  for (char *line = s; *line;) {
    char *end = strstr(line, "\r\n");
    CHECK(end && end - line <= 76);
    CHECK((end - line) % 3 == 1 || end[-1] != '=' || (end - line) <= 76);
    line = end + 2;
  }
  free(s);
  s = qp("a\r\nb\rc");
  CHECK_STR(s, "a\r\nb\r\nc\r\n");
  free(s);
}

TEST(mail_header_encoding_and_folding) {
  int rc;
  char *h = header("Subject", "Back in stock: Blue shirt", 1, &rc);
  CHECK(rc == 0);
  CHECK_STR(h, "Subject: Back in stock: Blue shirt\r\n");
  free(h);
  h = header("Subject", "Gr\xc3\xb6\xc3\x9f" "e M", 1, &rc);
  CHECK_STR(h, "Subject: =?UTF-8?B?R3LDtsOfZSBN?=\r\n");
  free(h);
  /* "=?" in a plain value would read as an encoded word: it is encoded. */
  h = header("Subject", "a =?x?= b", 1, &rc);
  CHECK(strncmp(h, "Subject: =?UTF-8?B?", 19) == 0);
  free(h);
  h = header("List-Unsubscribe",
             "<https://restock.example.com/restock-notifications/"
             "unsubscribe?token=abcdef>, <mailto:u@example.com>",
             0, &rc);
  CHECK(rc == 0);
  CHECK(strstr(h, ",\r\n <mailto:u@example.com>\r\n") != NULL);
  free(h);
  h = header("X-Bad", "a\r\nBcc: x@example.com", 1, &rc);
  CHECK(rc != 0);
  free(h);
  h = header("X-Bad", "caf\xc3\xa9", 0, &rc);
  CHECK(rc != 0);
  free(h);
  h = header("X-Bad", "\xff", 1, &rc);
  CHECK(rc != 0);
  free(h);
  /* A long UTF-8 subject: every line within 78, each word whole. */
  char long_subject[400] = "";
  for (int i = 0; i < 60; i++) strcat(long_subject, "\xc3\xa9t\xc3\xa9 ");
  h = header("Subject", long_subject, 1, &rc);
  CHECK(rc == 0);
  for (char *line = h; *line;) {
    char *end = strstr(line, "\r\n");
    CHECK(end && end - line <= 78);
    line = end + 2;
  }
  free(h);
}

TEST(mail_header_names) {
  CHECK(mail_header_name_ok("List-Unsubscribe"));
  CHECK(mail_header_name_ok("X-Tag"));
  CHECK(!mail_header_name_ok("From"));
  CHECK(!mail_header_name_ok("content-type"));
  CHECK(!mail_header_name_ok("Message-ID"));
  CHECK(!mail_header_name_ok("Bad Name"));
  CHECK(!mail_header_name_ok("Bad:Name"));
  CHECK(!mail_header_name_ok(""));
}

TEST(mail_date_format) {
  char d[40];
  mail_date(1751360700000LL, d, sizeof d); /* 2025-07-01 09:05:00 UTC */
  CHECK_STR(d, "Tue, 01 Jul 2025 09:05:00 +0000");
}

TEST(mail_build_message) {
  MailAddress from = {.name = "Shop", .addr = "shop@example.com"};
  MailAddress to[2] = {{.name = NULL, .addr = "ann@example.com"},
                       {.name = "B\xc3\xb6", .addr = "bob@example.com"}};
  const char *names[] = {"List-Unsubscribe-Post"};
  const char *values[] = {"List-Unsubscribe=One-Click"};
  MailMessage m = {.from = &from,
                   .to = to,
                   .nto = 2,
                   .subject = "Hi",
                   .text = "plain",
                   .text_len = 5,
                   .html = "<p>html</p>",
                   .html_len = 11,
                   .header_names = names,
                   .header_values = values,
                   .nheaders = 1,
                   .date_ms = 0,
                   .message_id = "<1@example.com>",
                   .boundary_seed = "ab12"};
  Buf b = {0};
  const char *why = NULL;
  CHECK(mail_build(&m, &b, &why) == 0);
  CHECK(strstr(b.data, "Date: Thu, 01 Jan 1970 00:00:00 +0000\r\n"));
  CHECK(strstr(b.data, "From: Shop <shop@example.com>\r\n"));
  CHECK(strstr(b.data,
                "To: ann@example.com, =?UTF-8?B?QsO2?= <bob@example.com>\r\n"));
  CHECK(strstr(b.data, "Message-ID: <1@example.com>\r\nMIME-Version: 1.0\r\n"));
  CHECK(strstr(b.data, "List-Unsubscribe-Post: List-Unsubscribe=One-Click"));
  CHECK(strstr(b.data, "boundary=\"=_restockd_ab12\""));
  const char *text = strstr(b.data, "text/plain");
  const char *html = strstr(b.data, "text/html");
  CHECK(text && html && text < html);
  CHECK(strstr(b.data, "--=_restockd_ab12--\r\n"));
  CHECK(strstr(b.data, "\n") && !strstr(b.data, "\r\r"));
  for (const char *p = b.data; (p = strchr(p, '\n')); p++)
    CHECK(p > b.data && p[-1] == '\r');
  buf_free(&b);
  /* Headers a caller may not set, and messages without a body. */
  const char *own[] = {"Content-Type"};
  m.header_names = own;
  CHECK(mail_build(&m, &b, &why) != 0);
  buf_free(&b);
  m.nheaders = 0;
  m.text = m.html = NULL;
  CHECK(mail_build(&m, &b, &why) != 0);
  buf_free(&b);
  m.text = "x";
  m.text_len = 1;
  m.message_id = "no-brackets@example.com";
  CHECK(mail_build(&m, &b, &why) != 0);
  buf_free(&b);
}

TEST(url_encode_unreserved) {
  Buf b = {0};
  const char *in = "a-Z_0.~ /?&=+%\xe1\x88\xb4";
  url_encode(in, strlen(in), &b);
  CHECK_STR(b.data, "a-Z_0.~%20%2F%3F%26%3D%2B%25%E1%88%B4");
  buf_free(&b);
}
