/* The node's pure parts (issue 14): its id and the test of a dead
 * predecessor's, the Config merged with the peers' handlers and the JSON the
 * registry and the claims take, and the password masked in a URI. */
#include <stdlib.h>
#include <unistd.h>

#include "config.h"
#include "node.h"
#include "store.h"
#include "unit.h"

TEST(node_id_default_names_this_process_alive) {
  unsetenv("RESTOCK_NODE_ID");
  char id[NODE_ID_MAX], err[128];
  CHECK(node_make_id(id, err, sizeof err) == 0);
  char pid[32];
  snprintf(pid, sizeof pid, ":%d:", (int)getpid());
  CHECK(strstr(id, pid) != NULL);
  /* This process is alive: its leases are not a dead predecessor's. */
  CHECK(!node_is_dead_here(id));
}

TEST(node_is_dead_here_only_for_a_gone_process_of_this_host) {
  unsetenv("RESTOCK_NODE_ID");
  char id[NODE_ID_MAX], err[128];
  CHECK(node_make_id(id, err, sizeof err) == 0);
  /* The same pid with another start time: a process that is gone (the pid
   * was reused). */
  char *last = strrchr(id, ':');
  CHECK(last != NULL);
  char other[NODE_ID_MAX];
  snprintf(other, sizeof other, "%.*s:12345", (int)(last - id), id);
  CHECK(node_is_dead_here(other));
  /* Another host, or another form of id, is never judged. */
  CHECK(!node_is_dead_here("some-other-host.example:1:12345"));
  CHECK(!node_is_dead_here("web-1"));
  CHECK(!node_is_dead_here(""));
  CHECK(!node_is_dead_here("::"));
}

TEST(node_id_from_the_environment_is_checked) {
  char id[NODE_ID_MAX], err[128];
  setenv("RESTOCK_NODE_ID", "web-3", 1);
  CHECK(node_make_id(id, err, sizeof err) == 0);
  CHECK_STR(id, "web-3");
  setenv("RESTOCK_NODE_ID", "has space", 1);
  CHECK(node_make_id(id, err, sizeof err) == -1);
  CHECK(strstr(err, "RESTOCK_NODE_ID") != NULL);
  unsetenv("RESTOCK_NODE_ID");
}

TEST(config_with_peers_adds_what_the_script_lacks) {
  Config *own = config_new();
  config_add_handler(own, "e", "mine", 5, EACH_EVENT);
  HandlerSpec peers[] = {
      {.event = "e", .name = "mine", .max_attempts = 9, .each = EACH_EVENT},
      {.event = "e", .name = "theirs", .max_attempts = 3,
       .each = EACH_SUBSCRIBER},
  };
  Config *c = config_with_peers(own, peers, 2);
  const HandlerSpec *h[4];
  CHECK(config_handlers(c, "e", h, 4) == 2);
  CHECK_STR(h[0]->name, "mine");
  CHECK(!h[0]->peer && h[0]->max_attempts == 5);
  CHECK_STR(h[1]->name, "theirs");
  CHECK(h[1]->peer && h[1]->each == EACH_SUBSCRIBER);
  /* The registry and the claims name this node's own handlers only. */
  char *full = config_handlers_json(c, true);
  char *claim = config_handlers_json(c, false);
  CHECK_STR(full, "[[\"e\",\"mine\",5,0]]");
  CHECK_STR(claim, "[[\"e\",\"mine\"]]");
  free(full);
  free(claim);
  config_unref(c);
  config_unref(own);
}

/* The merged Config is the one the node serves with: everything the
 * script set carries over, not only its options and handlers (the hook and
 * the blocked domains were lost on PostgreSQL once). */
TEST(config_with_peers_keeps_the_hook_and_the_blocked_domains) {
  Config *own = config_new();
  own->on_subscribe = true;
  strlist_push(&own->blocked_domains, "mailinator.com");
  strlist_push(&own->blocked_domains, "spam.example");
  Config *c = config_with_peers(own, NULL, 0);
  CHECK(c->on_subscribe);
  CHECK(c->blocked_domains.n == 2);
  CHECK_STR(c->blocked_domains.items[0], "mailinator.com");
  CHECK_STR(c->blocked_domains.items[1], "spam.example");
  config_unref(own);
  /* A copy: it outlives the script's own Config. */
  CHECK_STR(c->blocked_domains.items[1], "spam.example");
  config_unref(c);
}

TEST(display_uri_masks_the_password) {
  char *a = store_display_uri("postgresql://shop:s3cret@db:5432/x?sslmode=require");
  CHECK_STR(a, "postgresql://shop:***@db:5432/x?sslmode=require");
  char *b = store_display_uri("postgres://db/x?user=shop&password=s3cret&x=1");
  CHECK_STR(b, "postgres://db/x?user=shop&password=***&x=1");
  char *c = store_display_uri("postgresql://shop@db/x");
  CHECK_STR(c, "postgresql://shop@db/x");
  char *d = store_display_uri("/var/lib/restockd/restock.db");
  CHECK_STR(d, "/var/lib/restockd/restock.db");
  free(a);
  free(b);
  free(c);
  free(d);
}
