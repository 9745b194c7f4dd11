#include "email.h"
#include "unit.h"

static const char *norm(const char *in) {
  static char out[EMAIL_MAX + 1];
  return email_normalize(in, strlen(in), out, NULL) == 0 ? out : NULL;
}

TEST(email_trims_and_lowercases) {
  CHECK_STR(norm("  Jane.Doe@Example.COM \t\r\n"), "jane.doe@example.com");
  CHECK_STR(norm("a@b.co"), "a@b.co");
  CHECK_STR(norm("first+tag@sub.example.org"), "first+tag@sub.example.org");
}

TEST(email_needs_exactly_one_at) {
  CHECK(norm("no-at.example.com") == NULL);
  CHECK(norm("a@b@example.com") == NULL);
  CHECK(norm("@example.com") == NULL);
  CHECK(norm("a@") == NULL);
}

TEST(email_needs_a_dotted_domain) {
  CHECK(norm("a@localhost") == NULL);
  CHECK(norm("a@.example.com") == NULL);
  CHECK(norm("a@example..com") == NULL);
  CHECK(norm("a@example.com.") == NULL);
  CHECK(norm("a@exa_mple.com") == NULL);
}

TEST(email_rejects_spaces_and_controls) {
  CHECK(norm("a b@example.com") == NULL);
  CHECK(norm("ab@exa mple.com") == NULL);
  CHECK(norm("a\x01@example.com") == NULL);
  CHECK(norm("a\x7f@example.com") == NULL);
  CHECK(norm("") == NULL);
  CHECK(norm("   ") == NULL);
  char with_nul[] = "a\0b@example.com";
  char out[EMAIL_MAX + 1];
  CHECK(email_normalize(with_nul, sizeof with_nul - 1, out, NULL) == -1);
}

TEST(email_length_limits) {
  char local[80], addr[300];
  memset(local, 'x', 64);
  local[64] = '\0';
  snprintf(addr, sizeof addr, "%s@example.com", local);
  CHECK(norm(addr) != NULL); /* 64 is allowed */
  memset(local, 'x', 65);
  local[65] = '\0';
  snprintf(addr, sizeof addr, "%s@example.com", local);
  CHECK(norm(addr) == NULL); /* 65 is not */

  /* 254 in all is allowed, 255 is not: a@ + labels of 60 + dots. */
  char big[300];
  strcpy(big, "a@");
  while (strlen(big) + 61 <= 254)
    strcat(big, "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb.");
  size_t len = strlen(big);
  while (len < 251) big[len++] = 'c';
  big[len] = '\0';
  strcat(big, ".io");
  CHECK(strlen(big) == 254);
  CHECK(norm(big) != NULL);
  big[strlen(big) - 3] = 'c';
  strcat(big, "o");
  CHECK(strlen(big) == 255);
  CHECK(norm(big) == NULL);
}

TEST(email_reports_why) {
  char out[EMAIL_MAX + 1];
  const char *why = NULL;
  CHECK(email_normalize("nope", 4, out, &why) == -1);
  CHECK(why != NULL && strstr(why, "@") != NULL);
}

TEST(email_must_be_utf8) {
  CHECK_STR(norm("anna@ex\xc3\xa4mple.com"), "anna@ex\xc3\xa4mple.com");
  CHECK_STR(norm("\xe2\x82\xac@example.com"), "\xe2\x82\xac@example.com");
  CHECK(norm("\xff@example.com") == NULL);        /* not a lead byte */
  CHECK(norm("a@ex\xc3.com") == NULL);            /* cut short */
  CHECK(norm("\xc0\xaf@example.com") == NULL);    /* overlong '/' */
  CHECK(norm("\xed\xa0\x80@example.com") == NULL); /* a surrogate */
  CHECK(norm("\xf4\x90\x80\x80@example.com") == NULL); /* past U+10FFFF */
}
