/* router_match on any method and path, against a table shaped like the
 * server's (literal segments, one to five parameters, methods sharing a
 * path). The first byte picks the method, the rest is the raw path. A match
 * names a route whose method is the one asked for, has at most
 * ROUTER_MAX_PARAMS decoded values, each findable by its name; a path known
 * under other methods lists them in `allow`. */
#include <string.h>

#include "fuzz.h"
#include "router.h"

static void handler(struct HttpRequest *req, void *ctx) {}

static const Route routes[] = {
    {"GET", "/health", handler},
    {"GET", "/metrics", handler},
    {"POST", "/restock-notifications/variants/{variant_id}", handler},
    {"OPTIONS", "/restock-notifications/variants/{variant_id}", handler},
    {"GET", "/restock-notifications/unsubscribe", handler},
    {"POST", "/restock-notifications/unsubscribe", handler},
    {"POST", "/admin/variants", handler},
    {"GET", "/admin/variants/{id}", handler},
    {"POST", "/admin/variants/{id}", handler},
    {"DELETE", "/admin/variants/{id}", handler},
    {"POST", "/admin/products/{product_id}/variants/{id}", handler},
    {"POST", "/admin/events/{id}/retry", handler},
    {"GET", "/{a}/{b}/{c}/{d}", handler},
    {"GET", "/x/{a}/{b}/{c}/{d}/{e}", handler}, /* one more than allowed */
    {"PATCH", "/", handler},
};
#define NROUTES (sizeof routes / sizeof routes[0])

static const char *methods[] = {"GET",   "POST", "DELETE", "OPTIONS",
                                "PATCH", "HEAD", "PUT"};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  const char *method = methods[data[0] % (sizeof methods / sizeof *methods)];
  const char *path = (const char *)data + 1;
  size_t len = size - 1;
  RouteMatch m;
  RouteStatus st = router_match(routes, NROUTES, method, path, len, &m);
  switch (st) {
    case ROUTE_FOUND:
      FUZZ_CHECK(m.route && strcmp(m.route->method, method) == 0);
      FUZZ_CHECK(m.nparams <= ROUTER_MAX_PARAMS);
      for (size_t i = 0; i < m.nparams; i++) {
        FUZZ_CHECK(m.values[i] != NULL);
        char name[64];
        FUZZ_CHECK(m.name_lens[i] < sizeof name);
        memcpy(name, m.names[i], m.name_lens[i]);
        name[m.name_lens[i]] = '\0';
        FUZZ_CHECK(router_param(&m, name) != NULL);
      }
      break;
    case ROUTE_BAD_METHOD:
      FUZZ_CHECK(m.allow[0] != '\0' && strstr(m.allow, method) == NULL);
      FUZZ_CHECK(m.nparams == 0);
      break;
    case ROUTE_NOT_FOUND:
    case ROUTE_BAD_PATH:
      FUZZ_CHECK(m.nparams == 0 && m.allow[0] == '\0');
      break;
  }
  router_match_free(&m);
  return 0;
}
