/* The use-cases, the engine and the outbox on an in-memory store and a real
 * libuv loop, with a fake runner in place of the Lua host: they are built
 * from their parts (a Domain), not from the server. Callbacks are counted. */
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "error.h"
#include "inventory.h"
#include "migrate.h"
#include "outbox.h"
#include "subscriptions.h"
#include "unit.h"

typedef struct {
  char event[64];
  char handler[64];
  char subscriber[128];
  char data[512];
} RunSeen;

typedef struct {
  RunSeen seen[64];
  int runs;
  bool fail; /* every run fails, without retry */
} FakeRunner;

static int fake_run(void *ctx, const OutboxRun *r, OutboxRunDone done,
                    void *arg) {
  FakeRunner *f = ctx;
  if (f->runs < 64) {
    RunSeen *s = &f->seen[f->runs];
    snprintf(s->event, sizeof s->event, "%s", r->event);
    snprintf(s->handler, sizeof s->handler, "%s", r->handler);
    snprintf(s->subscriber, sizeof s->subscriber, "%s", r->subscriber);
    snprintf(s->data, sizeof s->data, "%s", r->data);
  }
  f->runs++;
  if (f->fail)
    done(arg, false, false, "the fake says no");
  else
    done(arg, true, true, NULL);
  return 0;
}

typedef struct {
  uv_loop_t loop;
  Domain d;
  FakeRunner runner;
} World;

static int world_open(World *w) {
  memset(w, 0, sizeof *w);
  uv_loop_init(&w->loop);
  w->d.loop = &w->loop;
  char *err = NULL;
  StoreOptions o = {.role = STORE_ROLE_SERVER, .readers = 0};
  if (store_open(":memory:", &o, &w->d.store, &err)) {
    printf("    store_open: %s\n", err);
    free(err);
    return -1;
  }
  FILE *devnull = fopen("/dev/null", "w");
  int rc = migrate_run(w->d.store, devnull, &err);
  fclose(devnull);
  if (rc) {
    printf("    migrate: %s\n", err);
    free(err);
    return -1;
  }
  Config *c = config_new();
  config_add_handler(c, "restock-notification.restocked", "mailer", 1,
                     EACH_EVENT);
  config_add_handler(c, "restock-notification.restocked", "per-shopper", 1,
                     EACH_SUBSCRIBER);
  w->d.config = c;
  memset(w->d.token_key, 7, sizeof w->d.token_key);
  if (store_start(w->d.store, &w->loop, &err)) {
    printf("    store_start: %s\n", err);
    free(err);
    return -1;
  }
  w->d.engine = engine_new(&w->d);
  w->d.outbox = outbox_new(&w->d, (OutboxRunner){fake_run, &w->runner});
  engine_start(w->d.engine);
  return 0;
}

/* Runs the loop until *flag reaches `want` or two seconds pass. */
static void run_until(World *w, const int *flag, int want) {
  uint64_t deadline = uv_hrtime() + 2000000000ULL;
  while (*flag < want && uv_hrtime() < deadline)
    uv_run(&w->loop, UV_RUN_NOWAIT);
}

static void world_close(World *w) {
  engine_close(w->d.engine);
  outbox_close(w->d.outbox);
  store_stop(w->d.store);
  uv_run(&w->loop, UV_RUN_DEFAULT);
  store_close(w->d.store);
  config_unref(w->d.config);
  CHECK(uv_loop_close(&w->loop) == 0);
}

static int subscribed_calls, subscribe_status;
static bool inside_submit;
static bool done_inside_submit;

static void on_subscribed(SubscribeCall *c, int status) {
  if (inside_submit) done_inside_submit = true;
  subscribed_calls++;
  subscribe_status = status;
  subscribe_call_clear(c);
  free(c);
}

static void subscribe(World *w, const char *variant, const char *email) {
  SubscribeCall *c = calloc(1, sizeof *c);
  snprintf(c->variant_id, sizeof c->variant_id, "%s", variant);
  snprintf(c->email, sizeof c->email, "%s", email);
  c->done = on_subscribed;
  inside_submit = true;
  subscriptions_subscribe(&w->d, c);
  inside_submit = false;
}

static int upserted_calls;
static void on_upserted(UpsertCall *c, int status) {
  CHECK(status == 0);
  upserted_calls++;
  upsert_call_clear(c);
  free(c);
}

static void upsert(World *w, const char *json) {
  UpsertCall *c = calloc(1, sizeof *c);
  c->variants = json_loads(json, 0, NULL);
  c->done = on_upserted;
  inventory_upsert(&w->d, c);
}

TEST(domain_subscribe_restock_and_deliver_per_handler) {
  World w;
  if (world_open(&w)) return;
  upserted_calls = subscribed_calls = 0;
  done_inside_submit = false;
  upsert(&w, "[{\"id\": \"v\", \"inventory_quantity\": 0}]");
  run_until(&w, &upserted_calls, 1);
  CHECK(upserted_calls == 1);
  subscribe(&w, "v", "ann@example.com");
  subscribe(&w, "v", "ben@example.com");
  subscribe(&w, "v", "ann@example.com"); /* a duplicate: no new row */
  CHECK(subscribed_calls == 0);          /* never from inside the call */
  run_until(&w, &subscribed_calls, 3);
  CHECK(subscribed_calls == 3);
  CHECK(subscribe_status == 0);
  CHECK(!done_inside_submit);
  CHECK(w.runner.runs == 0); /* nobody handles subscribed events */

  upsert(&w, "[{\"id\": \"v\", \"inventory_quantity\": 4}]");
  /* One delivery of the whole event, one per subscriber. */
  run_until(&w, &w.runner.runs, 3);
  CHECK(upserted_calls == 2);
  CHECK(w.runner.runs == 3);
  int whole = 0, per = 0;
  for (int i = 0; i < w.runner.runs && i < 64; i++) {
    RunSeen *s = &w.runner.seen[i];
    CHECK_STR(s->event, "restock-notification.restocked");
    if (strcmp(s->handler, "mailer") == 0) {
      whole++;
      CHECK_STR(s->subscriber, "");
      CHECK(strstr(s->data, "ann@example.com") != NULL);
      CHECK(strstr(s->data, "ben@example.com") != NULL);
    } else {
      per++;
      CHECK_STR(s->handler, "per-shopper");
      CHECK(strcmp(s->subscriber, "ann@example.com") == 0 ||
            strcmp(s->subscriber, "ben@example.com") == 0);
    }
  }
  CHECK(whole == 1 && per == 2);
  /* Nothing more runs: every delivery was recorded as delivered. */
  int runs = w.runner.runs;
  uint64_t until = uv_hrtime() + 200000000ULL;
  while (uv_hrtime() < until) uv_run(&w.loop, UV_RUN_NOWAIT);
  CHECK(w.runner.runs == runs);
  world_close(&w);
}

TEST(domain_subscribe_refuses_what_the_rule_refuses) {
  World w;
  if (world_open(&w)) return;
  upserted_calls = subscribed_calls = 0;
  upsert(&w, "[{\"id\": \"in\", \"inventory_quantity\": 3}]");
  run_until(&w, &upserted_calls, 1);
  subscribe(&w, "in", "ann@example.com");
  run_until(&w, &subscribed_calls, 1);
  CHECK(subscribe_status == RESTOCK_ENOTALLOWED);
  subscribe(&w, "ghost", "ann@example.com");
  run_until(&w, &subscribed_calls, 2);
  CHECK(subscribe_status == RESTOCK_ENOTFOUND);
  world_close(&w);
}

typedef struct {
  ReadCall call;
  char status[32];
  int done;
} StatusRead;

static int status_fn(StoreTx *tx, ReadCall *c);
static int first_event_status(void *ctx, const EventRow *e) {
  StatusRead *r = ctx;
  snprintf(r->status, sizeof r->status, "%s", e->status);
  return 0;
}
static int no_delivery(void *ctx, const DeliveryRow *d) { return 0; }
static int status_fn(StoreTx *tx, ReadCall *c) {
  StatusRead *r = (StatusRead *)c;
  long long count = 0;
  EventVisitor v = {first_event_status, no_delivery, r};
  return store_event_list(tx, "restock-notification.restocked", NULL, 1, 0, &v,
                          &count);
}
static void status_done(ReadCall *c, int status) { ((StatusRead *)c)->done++; }

TEST(domain_a_failing_delivery_dies_after_its_attempts) {
  World w;
  if (world_open(&w)) return;
  w.runner.fail = true;
  upserted_calls = subscribed_calls = 0;
  upsert(&w, "[{\"id\": \"v\", \"inventory_quantity\": 0}]");
  run_until(&w, &upserted_calls, 1);
  subscribe(&w, "v", "ann@example.com");
  run_until(&w, &subscribed_calls, 1);
  upsert(&w, "[{\"id\": \"v\", \"inventory_quantity\": 1}]");
  run_until(&w, &w.runner.runs, 2);
  CHECK(w.runner.runs == 2); /* max_attempts 1 each: no retry */
  /* The outcomes are written by units of their own: wait for them. */
  StatusRead r = {.call = {.fn = status_fn, .done = status_done}};
  uint64_t until = uv_hrtime() + 2000000000ULL;
  while (uv_hrtime() < until && strcmp(r.status, "dead") != 0) {
    r.done = 0;
    domain_read(&w.d, &r.call);
    run_until(&w, &r.done, 1);
  }
  CHECK_STR(r.status, "dead");
  world_close(&w);
}

/* The ids a group's subscribes take (SQLite reads and records them once a
 * group): each new, and never one given before, even when the subscription
 * holding the largest is gone by the next group. */
typedef struct {
  Unit unit;
  long long ids[16];
  long long events[16];
  int nids, nevents, done;
  bool remove_last;
} IdsUnit;

static int collect_id(void *ctx, const SubscriptionRow *row) {
  IdsUnit *u = ctx;
  if (u->nids < 16) u->ids[u->nids++] = row->id;
  return 0;
}
static int collect_event(void *ctx, const EventRow *e) {
  IdsUnit *u = ctx;
  if (u->nevents < 16) u->events[u->nevents++] = e->id;
  return 0;
}
static int ids_fn(StoreTx *tx, void *arg) {
  IdsUnit *u = arg;
  u->nids = u->nevents = 0;
  long long count = 0;
  SubscriptionFilter f = {.variant_id = "v", .limit = 16};
  int rc = store_subscription_list(tx, &f, collect_id, u, &count);
  EventVisitor v = {collect_event, no_delivery, u};
  if (rc == 0)
    rc = store_event_list(tx, "restock-notification.subscribed", NULL, 16, 0,
                          &v, &count);
  bool removed = false;
  if (rc == 0 && u->remove_last && u->nids > 0)
    rc = store_subscription_remove(tx, u->ids[u->nids - 1], &removed);
  return rc;
}
static void ids_done(Unit *unit, int status) {
  CHECK(status == 0);
  ((IdsUnit *)unit)->done++;
}
static void read_ids(World *w, IdsUnit *u, bool remove_last) {
  u->done = 0;
  u->remove_last = remove_last;
  unit_write(&w->d, &u->unit, ids_fn, ids_done);
  run_until(w, &u->done, 1);
}
static bool distinct(const long long *v, int n) {
  for (int i = 0; i < n; i++)
    for (int j = i + 1; j < n; j++)
      if (v[i] == v[j]) return false;
  return true;
}

TEST(domain_subscribe_ids_are_never_given_twice) {
  World w;
  if (world_open(&w)) return;
  upserted_calls = subscribed_calls = 0;
  upsert(&w, "[{\"id\": \"v\", \"inventory_quantity\": 0}]");
  run_until(&w, &upserted_calls, 1);
  /* Queued together, so that the writer runs them in one group. */
  subscribe(&w, "v", "ann@example.com");
  subscribe(&w, "v", "ben@example.com");
  subscribe(&w, "v", "cy@example.com");
  run_until(&w, &subscribed_calls, 3);
  CHECK(subscribe_status == 0);
  IdsUnit first = {0};
  read_ids(&w, &first, true); /* and removes the newest */
  CHECK(first.nids == 3 && distinct(first.ids, 3));
  CHECK(first.nevents == 3 && distinct(first.events, 3));
  long long largest = first.ids[2];
  subscribe(&w, "v", "dee@example.com");
  subscribe(&w, "v", "eve@example.com");
  run_until(&w, &subscribed_calls, 5);
  CHECK(subscribe_status == 0);
  IdsUnit second = {0};
  read_ids(&w, &second, false);
  CHECK(second.nids == 4 && distinct(second.ids, 4));
  /* The two new ones are past the removed one, which is not given again. */
  CHECK(second.ids[2] > largest && second.ids[3] > second.ids[2]);
  CHECK(second.nevents == 5 && distinct(second.events, 5));
  world_close(&w);
}

typedef struct {
  char failed[128];
} PrepareAll;

static int prepare_all_fn(StoreTx *tx, void *arg) {
  PrepareAll *p = arg;
  return store_prepare_all(tx, p->failed, sizeof p->failed);
}

/* Every statement of the backend compiles against the migrated schema (a
 * statement is otherwise prepared only when first used). */
TEST(store_every_statement_prepares) {
  Store *s = NULL;
  char *err = NULL;
  StoreOptions o = {.role = STORE_ROLE_SERVER, .readers = 0};
  CHECK(store_open(":memory:", &o, &s, &err) == 0);
  if (!s) {
    free(err);
    return;
  }
  FILE *devnull = fopen("/dev/null", "w");
  CHECK(migrate_run(s, devnull, &err) == 0);
  fclose(devnull);
  free(err);
  PrepareAll p = {""};
  int rc = store_run(s, prepare_all_fn, &p); /* before store_start */
  if (rc) printf("    cannot prepare %s\n", p.failed);
  CHECK(rc == 0);
  store_close(s);
}

TEST(subscriptions_locale_tags) {
  const char *good[] = {"de",         "pt-BR",
                        "zh-Hant-TW", "en-US-x-twain",
                        "sr-Latn-RS", "es-419",
                        "abcdefgh",   "en-aaaaaaaa-bbbbbbbb-cccccccc-abcde"};
  const char *bad[] = {"",
                       "d",
                       "de-",
                       "-de",
                       "de--at",
                       "de DE",
                       "123",
                       "abcdefghi",
                       "de_DE",
                       "en-aaaaaaaa-bbbbbbbb-cccccccc-abcdef",
                       "de-abcdefghi",
                       "é",
                       "de\n"};
  for (size_t i = 0; i < sizeof good / sizeof *good; i++)
    CHECK(subscriptions_valid_locale(good[i]));
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    CHECK(!subscriptions_valid_locale(bad[i]));
}

TEST(outbox_subscriber_data_is_the_shoppers_share) {
  json_t *data = json_loads(
      "{\"variant_id\":\"v\",\"sales_channel_id\":\"web\","
      "\"emails\":[\"a@x.io\",\"b@x.io\"],"
      "\"subscribers\":[{\"email\":\"a@x.io\",\"locale\":\"de\"},"
      "{\"email\":\"b@x.io\"}]}",
      0, NULL);
  json_t *a = outbox_subscriber_data(data, "a@x.io");
  CHECK(json_object_get(a, "emails") == NULL);
  CHECK(json_object_get(a, "subscribers") == NULL);
  CHECK_STR(json_string_value(json_object_get(a, "variant_id")), "v");
  CHECK_STR(json_string_value(json_object_get(a, "sales_channel_id")), "web");
  CHECK_STR(json_string_value(json_object_get(a, "email")), "a@x.io");
  CHECK_STR(json_string_value(
                json_object_get(json_object_get(a, "subscriber"), "locale")),
            "de");
  /* An email without an entry gets {email}. */
  json_t *c = outbox_subscriber_data(data, "c@x.io");
  CHECK_STR(json_string_value(
                json_object_get(json_object_get(c, "subscriber"), "email")),
            "c@x.io");
  CHECK(json_object_size(json_object_get(c, "subscriber")) == 1);
  /* The event itself is left as it was. */
  CHECK(json_array_size(json_object_get(data, "emails")) == 2);
  json_decref(a);
  json_decref(c);
  json_decref(data);
}

/* ---- a group's units without savepoints (run_group's bare mode) -------- */

typedef struct {
  StoreWork work;
  const char *key;
  bool fail;         /* writes its key, then fails */
  bool replayable;   /* has a reset */
  uv_sem_t *started; /* posts it when it runs */
  uv_sem_t *gate;    /* then waits for it (holds the writer) */
  int runs, resets;  /* writer side, read after done */
  int status, done;
} KvUnit;

static int kv_unit_fn(StoreTx *tx, void *arg) {
  KvUnit *u = arg;
  if (u->started) uv_sem_post(u->started);
  if (u->gate) uv_sem_wait(u->gate);
  u->runs++;
  int rc = store_kv_put(tx, u->key, "x", 0, 1);
  if (rc) return rc;
  return u->fail ? RESTOCK_EINVAL : 0;
}

static void kv_unit_reset(void *arg) { ((KvUnit *)arg)->resets++; }

static int kv_done_calls;
static void kv_unit_done(void *arg, int status) {
  KvUnit *u = arg;
  u->status = status;
  u->done = 1;
  kv_done_calls++;
}

static void kv_queue(World *w, KvUnit *u) {
  u->work.reset = u->replayable ? kv_unit_reset : NULL;
  store_write(w->d.store, &u->work, kv_unit_fn, kv_unit_done, u);
}

typedef struct {
  const char *keys[4];
  bool found[4];
} KvRead;

static int kv_read_fn(StoreTx *tx, void *arg) {
  KvRead *r = arg;
  for (int i = 0; i < 4 && r->keys[i]; i++) {
    char *v = NULL;
    r->found[i] = store_kv_get(tx, r->keys[i], 1, &v) == 0;
    free(v);
  }
  return 0;
}

static void kv_read_done(void *arg, int status) {
  (void)arg;
  CHECK(status == 0);
  kv_done_calls++;
}

/* Runs `units` as one group (a unit holds the writer while they are
 * queued), then reads which keys were stored. */
static void kv_group(World *w, KvUnit *units, int n, KvRead *r) {
  uv_sem_t gate, started;
  uv_sem_init(&gate, 0);
  uv_sem_init(&started, 0);
  KvUnit holder = {
      .key = "holder", .replayable = true, .started = &started, .gate = &gate};
  kv_done_calls = 0;
  kv_queue(w, &holder);
  uv_sem_wait(&started); /* its group is taken: the next holds the rest */
  for (int i = 0; i < n; i++) kv_queue(w, &units[i]);
  uv_sem_post(&gate);
  run_until(w, &kv_done_calls, n + 1);
  StoreWork rw = {0};
  store_write(w->d.store, &rw, kv_read_fn, kv_read_done, r);
  run_until(w, &kv_done_calls, n + 2);
  uv_sem_destroy(&gate);
  uv_sem_destroy(&started);
}

/* A unit that fails after writing is undone alone: the group is rolled
 * back and the units before it run again (once more each, after their
 * reset); the ones after it run once. */
TEST(store_group_undoes_a_unit_that_failed_after_writing) {
  World w;
  if (world_open(&w)) return;
  KvUnit u[3] = {{.key = "a", .replayable = true},
                 {.key = "b", .replayable = true, .fail = true},
                 {.key = "c", .replayable = true}};
  KvRead r = {{"a", "b", "c"}, {0}};
  kv_group(&w, u, 3, &r);
  CHECK(u[0].done && u[0].status == 0);
  CHECK(u[1].done && u[1].status == RESTOCK_EINVAL);
  CHECK(u[2].done && u[2].status == 0);
  CHECK(r.found[0] && !r.found[1] && r.found[2]);
  CHECK(u[0].runs == 2 && u[0].resets == 1);
  CHECK(u[1].runs == 1 && u[1].resets == 0);
  CHECK(u[2].runs == 1 && u[2].resets == 0);
  world_close(&w);
}

/* A unit before another that is not replayable: the group runs each unit
 * in a savepoint, so none runs twice. */
TEST(store_group_with_a_unit_not_replayable_uses_savepoints) {
  World w;
  if (world_open(&w)) return;
  KvUnit u[3] = {{.key = "a", .replayable = false},
                 {.key = "b", .replayable = true, .fail = true},
                 {.key = "c", .replayable = false}};
  KvRead r = {{"a", "b", "c"}, {0}};
  kv_group(&w, u, 3, &r);
  CHECK(u[0].status == 0 && u[1].status == RESTOCK_EINVAL && u[2].status == 0);
  CHECK(r.found[0] && !r.found[1] && r.found[2]);
  CHECK(u[0].runs == 1 && u[1].runs == 1 && u[2].runs == 1);
  world_close(&w);
}
