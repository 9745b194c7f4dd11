#include "error.h"
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
  CHECK(email_normalize(with_nul, sizeof with_nul - 1, out, NULL) ==
        RESTOCK_EINVAL);
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
  CHECK(email_normalize("nope", 4, out, &why) == RESTOCK_EINVAL);
  CHECK(why != NULL && strstr(why, "@") != NULL);
}

TEST(email_must_be_utf8) {
  CHECK_STR(norm("anna@ex\xc3\xa4mple.com"), "anna@xn--exmple-cua.com");
  CHECK_STR(norm("\xe2\x82\xac@example.com"), "\xe2\x82\xac@example.com");
  CHECK(norm("\xff@example.com") == NULL);             /* not a lead byte */
  CHECK(norm("a@ex\xc3.com") == NULL);                 /* cut short */
  CHECK(norm("\xc0\xaf@example.com") == NULL);         /* overlong '/' */
  CHECK(norm("\xed\xa0\x80@example.com") == NULL);     /* a surrogate */
  CHECK(norm("\xf4\x90\x80\x80@example.com") == NULL); /* past U+10FFFF */
}

/* "Ü@EXÄMPLE.DE" and "ü@exämple.de" are one mailbox: the local part is
 * lower-cased by Unicode's rules, the domain folded by UTS #46 and written
 * as A-labels. */
TEST(email_folds_unicode_case) {
  CHECK_STR(norm("\xc3\x9c@EX\xc3\x84MPLE.DE"), "\xc3\xbc@xn--exmple-cua.de");
  CHECK_STR(norm("\xc3\xbc@ex\xc3\xa4mple.de"), "\xc3\xbc@xn--exmple-cua.de");
  CHECK_STR(norm("\xc3\xbc@XN--EXMPLE-CUA.DE"), "\xc3\xbc@xn--exmple-cua.de");
  /* Greek capital sigma, Cyrillic: full Unicode lower-casing. */
  CHECK_STR(norm("\xce\xa3\xce\x91@example.com"),
            "\xcf\x83\xce\xb1@example.com");
  CHECK_STR(norm("\xd0\x98\xd0\x92\xd0\x90\xd0\x9d@example.com"),
            "\xd0\xb8\xd0\xb2\xd0\xb0\xd0\xbd@example.com");
  /* Full-width letters and dot in the domain map to ASCII (UTS #46). */
  CHECK_STR(
      norm("a@\xef\xbc\xa5\xef\xbc\xb8\xef\xbc\x8e\xef\xbd\x83\xef\xbd\x8f"),
      "a@ex.co");
}

TEST(email_composes_nfc) {
  /* "u" + COMBINING DIAERESIS is "ü", in the local part and the domain. */
  CHECK_STR(norm("u\xcc\x88@exa\xcc\x88mple.de"), "\xc3\xbc@xn--exmple-cua.de");
  CHECK_STR(norm("U\xcc\x88@example.de"), "\xc3\xbc@example.de");
}

TEST(email_keeps_sharp_s_and_ascii_rules) {
  /* Non-transitional IDNA: "faß.de" is not "fass.de". */
  CHECK_STR(norm("a@fa\xc3\x9f.de"), "a@xn--fa-hia.de");
  CHECK_STR(norm("a@fass.de"), "a@fass.de");
  /* ASCII-only domains keep their rules, and are not sent through IDNA. */
  CHECK_STR(norm("a@ab--cd.example"), "a@ab--cd.example");
  CHECK_STR(norm("A@B-C.EXAMPLE"), "a@b-c.example");
}

TEST(email_refuses_invalid_idna) {
  CHECK(norm("a@xn--zz.com") == NULL);              /* bad Punycode */
  CHECK(norm("a@exa\xe2\x98\x95mple.com") == NULL); /* U+2615, disallowed */
  CHECK(norm("a@\xcc\x81"
             "example.com") == NULL);              /* leading combining mark */
  CHECK(norm("a@ab\xd7\x90.com") == NULL);         /* bidi rule */
  CHECK(norm("a@ex\xc3\xa4_mple.com") == NULL);    /* '_' passed by libidn2 */
  CHECK(norm("a@ex\xef\xbc\xa0mple.com") == NULL); /* full-width '@' */
  const char *why = NULL;
  char out[EMAIL_MAX + 1];
  const char *bad = "a@xn--zz.com";
  CHECK(email_normalize(bad, strlen(bad), out, &why) == RESTOCK_EINVAL);
  CHECK(why != NULL && strstr(why, "internationalized") != NULL);
}

TEST(email_refuses_invisible_local_parts) {
  CHECK(norm("a\xe2\x80\xae"
             "b@example.com") == NULL); /* RIGHT-TO-LEFT OVERRIDE */
  CHECK(norm("a\xe2\x80\x8b"
             "b@example.com") == NULL); /* ZERO WIDTH SPACE */
  CHECK(norm("a\xc2\xa0"
             "b@example.com") == NULL); /* NO-BREAK SPACE */
  CHECK(norm("a\xc2\x85"
             "b@example.com") == NULL); /* NEL, a C1 control */
  CHECK(norm("a\xee\x80\x80"
             "b@example.com") == NULL); /* private use */
  /* The joiners that Indic scripts need are kept. */
  CHECK(norm("\xe0\xa4\x95\xe0\xa5\x8d\xe2\x80\x8d@example.com") != NULL);
}

TEST(email_limits_apply_to_the_normalized_form) {
  /* 32 "Ü" are 64 bytes: allowed; 33 are 66: refused, whatever the case. */
  char addr[400] = "";
  for (int i = 0; i < 32; i++) strcat(addr, "\xc3\x9c");
  strcat(addr, "@example.com");
  CHECK(norm(addr) != NULL);
  char more[400] = "\xc3\x9c";
  strcat(more, addr);
  CHECK(norm(more) == NULL);
  /* 253 bytes as typed, 277 in A-labels: refused. */
  char big[400];
  memset(big, 'x', 38);
  strcpy(big + 38, "@");
  for (int i = 0; i < 4; i++) {
    size_t at = strlen(big);
    memset(big + at, 'b', 50);
    strcpy(big + at + 50, "\xc3\xa4.");
  }
  strcat(big, "de");
  CHECK(strlen(big) == 253);
  CHECK(norm(big) == NULL);
  big[0] = '\0';
  strcpy(big, "x@");
  for (int i = 0; i < 4; i++) {
    size_t at = strlen(big);
    memset(big + at, 'b', 50);
    strcpy(big + at + 50, "\xc3\xa4.");
  }
  strcat(big, "de");
  CHECK(norm(big) != NULL); /* 240 in A-labels */
  /* Input longer than EMAIL_INPUT_MAX is not looked at. */
  char huge[EMAIL_INPUT_MAX + 20];
  memset(huge, 'a', sizeof huge);
  memcpy(huge + sizeof huge - 12, "@example.com", 12);
  char out[EMAIL_MAX + 1];
  CHECK(email_normalize(huge, sizeof huge, out, NULL) == RESTOCK_EINVAL);
}

TEST(email_normalizing_twice_changes_nothing) {
  const char *cases[] = {"\xc3\x9c@EX\xc3\x84MPLE.DE",
                         "U\xcc\x88@exa\xcc\x88mple.de", "Jane@Example.COM",
                         "\xc4\xb0@example.com", "a@fa\xc3\x9f.de"};
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char once[EMAIL_MAX + 1], twice[EMAIL_MAX + 1];
    CHECK(email_normalize(cases[i], strlen(cases[i]), once, NULL) == 0);
    CHECK(email_normalize(once, strlen(once), twice, NULL) == 0);
    CHECK_STR(twice, once);
  }
}

TEST(email_domains_compile_normalizes_sorts_and_dedups) {
  StrList l = {0};
  char err[160] = "";
  CHECK(email_domains_compile(" Mailinator.COM, spam.example,,mailinator.com ,"
                              "EXÄMPLE.de",
                              &l, err, sizeof err) == 0);
  CHECK(l.n == 3);
  if (l.n == 3) {
    CHECK_STR(l.items[0], "mailinator.com");
    CHECK_STR(l.items[1], "spam.example");
    CHECK_STR(l.items[2], "xn--exmple-cua.de");
  }
  CHECK(email_domain_listed(&l, "a@mailinator.com"));
  CHECK(email_domain_listed(&l, "a@deep.sub.mailinator.com"));
  CHECK(email_domain_listed(&l, "a@xn--exmple-cua.de"));
  CHECK(!email_domain_listed(&l, "a@notmailinator.com"));
  CHECK(!email_domain_listed(&l, "a@mailinator.com.au"));
  CHECK(!email_domain_listed(&l, "a@example"));
  CHECK(!email_domain_listed(&l, "a@com"));
  strlist_clear(&l);
  /* Nothing, or only separators: an empty list that blocks nothing. */
  CHECK(email_domains_compile(NULL, &l, err, sizeof err) == 0 && l.n == 0);
  CHECK(email_domains_compile(" , ,", &l, err, sizeof err) == 0 && l.n == 0);
  CHECK(!email_domain_listed(&l, "a@example.com"));
}

TEST(email_domains_compile_refuses_what_is_not_a_domain) {
  StrList l = {0};
  char err[160] = "";
  CHECK(email_domains_compile("example.com, not a domain", &l, err,
                              sizeof err) == RESTOCK_EINVAL);
  CHECK(strstr(err, "'not a domain'") != NULL);
  CHECK(l.n == 0);
  CHECK(email_domains_compile("localhost", &l, err, sizeof err) ==
        RESTOCK_EINVAL);
  CHECK(email_domains_compile("a@b.com", &l, err, sizeof err) ==
        RESTOCK_EINVAL);
  strlist_clear(&l);
}
