#include "error.h"
#include <stdlib.h>

#include "router.h"
#include "unit.h"
#include "url.h"

TEST(url_decode_escapes) {
  char *s = url_decode("a%20b%2Fc+d", 11, 0);
  CHECK_STR(s, "a b/c+d");
  free(s);
  s = url_decode("a%20b+c", 7, 1);
  CHECK_STR(s, "a b c");
  free(s);
  CHECK(url_decode("%zz", 3, 0) == NULL);
  CHECK(url_decode("%2", 2, 0) == NULL);
  CHECK(url_decode("abc%", 4, 0) == NULL);
  CHECK(url_decode("%00", 3, 0) == NULL);
}

TEST(url_parse_pairs_splits_and_decodes) {
  KeyValueList l = {0};
  const char *q = "email=a%40b.co&&flag&x=1+2&x=3";
  CHECK(url_parse_pairs(q, strlen(q), 10, &l) == 0);
  CHECK(l.count == 4);
  CHECK_STR(url_pairs_get(&l, "email"), "a@b.co");
  CHECK_STR(url_pairs_get(&l, "flag"), "");
  CHECK_STR(url_pairs_get(&l, "x"), "1 2");
  CHECK(url_pairs_get(&l, "missing") == NULL);
  url_pairs_free(&l);
  CHECK(url_parse_pairs("a=%zz", 5, 10, &l) == RESTOCK_EINVAL);
  CHECK(l.count == 0);
  CHECK(url_parse_pairs("a=1&b=2&c=3", 11, 2, &l) == RESTOCK_EINVAL);
}

static int calls;
static void h1(struct HttpRequest *r, void *c) { calls++; }
static void h2(struct HttpRequest *r, void *c) { calls += 10; }

static const Route routes[] = {
    {"GET", "/health", h1},
    {"GET", "/admin/variants/{id}", h1},
    {"POST", "/admin/variants/{id}", h2},
    {"POST", "/admin/products/{product_id}/variants/{id}", h2},
};
#define N (sizeof routes / sizeof routes[0])

static RouteStatus match(const char *method, const char *path, RouteMatch *m) {
  return router_match(routes, N, method, path, strlen(path), m);
}

TEST(router_matches_literals_and_params) {
  RouteMatch m;
  CHECK(match("GET", "/health", &m) == ROUTE_FOUND);
  CHECK(m.route == &routes[0]);
  router_match_free(&m);

  CHECK(match("POST", "/admin/products/p%2F1/variants/var%201", &m) ==
        ROUTE_FOUND);
  CHECK(m.route == &routes[3]);
  CHECK_STR(router_param(&m, "product_id"), "p/1");
  CHECK_STR(router_param(&m, "id"), "var 1");
  CHECK(router_param(&m, "nope") == NULL);
  calls = 0;
  m.route->fn(NULL, NULL);
  CHECK(calls == 10);
  router_match_free(&m);
}

TEST(router_not_found_and_bad_method) {
  RouteMatch m;
  CHECK(match("GET", "/healthz", &m) == ROUTE_NOT_FOUND);
  router_match_free(&m);
  CHECK(match("GET", "/health/", &m) == ROUTE_NOT_FOUND);
  router_match_free(&m);
  CHECK(match("GET", "/admin/variants/", &m) == ROUTE_NOT_FOUND);
  router_match_free(&m);
  CHECK(match("GET", "/admin/variants/a/b", &m) == ROUTE_NOT_FOUND);
  router_match_free(&m);
  CHECK(match("GET", "", &m) == ROUTE_NOT_FOUND);
  router_match_free(&m);
  CHECK(match("DELETE", "/admin/variants/x", &m) == ROUTE_BAD_METHOD);
  CHECK_STR(m.allow, "GET, POST");
  router_match_free(&m);
  CHECK(match("GET", "/admin/variants/%zz", &m) == ROUTE_BAD_PATH);
  router_match_free(&m);
}
