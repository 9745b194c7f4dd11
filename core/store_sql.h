/* The statements store.c runs, by name. Each backend gives each one its own
 * SQL text (store_sqlite.c's table), with the same positional parameters
 * and result columns, so that the operations in store.c are written once.
 * Nothing builds SQL text from input: every statement is one of these. */
#ifndef RESTOCKD_STORE_SQL_H
#define RESTOCKD_STORE_SQL_H

#define STORE_STATEMENTS(X)                                                                                                                 \
  X(BEGIN)                                                                                                                                  \
  X(BEGIN_READ)                                                                                                                             \
  X(COMMIT) X(ROLLBACK) X(SAVEPOINT) X(RELEASE) X(ROLLBACK_TO) X(MIG_CREATE) X(MIG_GET) X(                                                  \
      MIG_RECORD) X(MIG_LOCK) X(MIG_UNLOCK) X(VARIANT_GET) X(VARIANT_PUT) X(VARIANT_SET_QTY)                                                \
      X(VARIANT_DELETE) X(VARIANT_LIST) X(VARIANT_COUNT) X(SUB_NEXT_ID) X(SUB_ID_TAKEN) X(                                                  \
          EVENT_NEXT_ID) X(SUB_INSERT) X(SUB_CREATED) X(SUB_REMOVE_ID) X(SUB_LIST)                                                          \
          X(SUB_LIST_BY_EMAIL) X(SUB_LIST_BY_VARIANT) X(SUB_COUNT) X(SUB_COUNT_BY_EMAIL) X(                                                 \
              SUB_COUNT_BY_VARIANT) X(HIST_LIST) X(HIST_LIST_BY_EMAIL) X(HIST_LIST_BY_VARIANT)                                              \
              X(HIST_COUNT) X(HIST_COUNT_BY_EMAIL) X(HIST_COUNT_BY_VARIANT) X(SUB_TOTAL) X(                                                 \
                  SUB_ANY) X(SUB_SCOPES) X(SUB_TAKE) X(SUB_TO_HISTORY) X(SUB_DELETE_UPTO)                                                   \
                  X(SUB_SCOPE_ANY) X(DEMAND_BULK_ON) X(DEMAND_BULK_OFF) X(DEMAND_TAKEN) X(                                                  \
                      SUB_CANCEL_VARIANT_HIST) X(SUB_CANCEL_VARIANT_DELETE) X(SUB_CANCEL_CHANNEL_HIST)                                      \
                      X(SUB_CANCEL_CHANNEL_DELETE) X(HIST_VARIANTS) X(EVENT_SCRUB_RESTOCKED) X(                                             \
                          DELIVERY_SCRUB_SUBSCRIBER) X(EVENT_ERASE_SUBSCRIBED) X(EVENT_EMITTED_WITH)                                        \
                          X(EVENT_SET_DATA) X(SUB_ERASE) X(HIST_ERASE) X(CHECK_INSERT) X(CHECK_REPLACE) X(                                  \
                              CHECK_NEXT) X(CHECK_DUE) X(CHECK_DELETE) X(CHECK_COUNT) X(EVENT_INSERT)                                       \
                              X(EVENT_INSERT_AUTO) X(SUB_SET_EVENT) X(DELIVERY_INSERT) X(DELIVERY_DUE) X(                                   \
                                  DELIVERY_LEASE) X(DELIVERY_FINISH) X(EVENT_REFRESH) X(EVENT_FINISH)                                                       \
                                  X(DELIVERY_NEXT) X(DELIVERY_RELEASE) X(DELIVERY_RELEASE_ALL) X(                                           \
                                      DELIVERY_PENDING) X(EVENT_LIST)                                                                       \
                                      X(EVENT_COUNT) X(EVENT_LIST_OPEN) X(EVENT_COUNT_OPEN) X(EVENT_LIST_NAMED) X(                          \
                                          EVENT_COUNT_NAMED) X(EVENT_DELIVERIES) X(EVENT_EXISTS)                                            \
                                          X(EVENT_RETRY) X(EVENT_SCAN) X(EVENT_DELETE) X(                                                   \
                                              LOCATION_UPSERT) X(LOCATION_GET) X(LOCATION_DELETE)                                           \
                                              X(LOCATION_VARIANTS) X(LEVELS_DELETE_LOCATION) X(                                             \
                                                  LEVELS_DELETE_VARIANT) X(CHANNEL_LOC_DELETE_LOCATION)                                     \
                                                  X(CHANNEL_UPSERT) X(CHANNEL_GET) X(                                                       \
                                                      CHANNEL_DELETE) X(CHANNEL_LOCATIONS)                                                  \
                                                      X(CHANNEL_LOC_CLEAR) X(                                                               \
                                                          CHANNEL_LOC_ADD) X(CHANNEL_LEVELS)                                                \
                                                          X(LEVEL_GET) X(LEVEL_UPSERT) X(                                                   \
                                                              LEVEL_LIST_VARIANT) X(LEVEL_LIST_LOCATION)                                    \
                                                              X(KEY_UPSERT) X(KEY_GET) X(                                                   \
                                                                  KEY_CHANNELS) X(KEY_CLEAR)                                                \
                                                                  X(KEY_ADD) X(                                                             \
                                                                      KEY_DELETE) X(KEY_CHANNEL_DELETE_CHANNEL)                             \
                                                                      X(VARIANTS_TO_CHECK) X(                                               \
                                                                          LOCATION_LIST)                                                    \
                                                                          X(LOCATION_COUNT) X(                                              \
                                                                              CHANNEL_LIST)                                                 \
                                                                              X(CHANNEL_COUNT) X(                                           \
                                                                                  KEY_LIST)                                                 \
                                                                                  X(KEY_COUNT) X(                                           \
                                                                                      META_GET)                                             \
                                                                                      X(META_PUT) /* The subscription's life (issue 15). */ \
      X(SUB_FIND) X(SUB_SET_WISH) X(PEND_FIND) X(PEND_INSERT) X(PEND_SET_WISH)                                                              \
          X(PEND_SET_SENT) X(PEND_GET) X(PEND_ACTIVATE) X(PEND_DELETE) X(                                                                   \
              SUB_EXISTS_ID) X(PEND_SCAN) X(SUB_SCAN) X(SUB_EXPIRE_HIST)                                                                    \
              X(PEND_LIST) X(PEND_LIST_BY_EMAIL) X(PEND_LIST_BY_VARIANT) X(                                                                 \
                  PEND_COUNT) X(PEND_COUNT_BY_EMAIL) X(PEND_COUNT_BY_VARIANT)                                                               \
                  X(PEND_ERASE) X(PEND_CANCEL_VARIANT) X(PEND_CANCEL_CHANNEL)                                                               \
                      X(EVENT_ERASE_CONFIRM) X(EMAIL_KNOWN) X(EXPORT_ACTIVE)                                                                \
                          X(EXPORT_PENDING)                                                                                                 \
                              X(EXPORT_HIST) /* Shop connectors (issue 16):                                                                 \
                                              * restock.kv, task leases,                                                                    \
                                              * orders and conversions. */                                                                  \
      X(KV_GET) X(KV_PUT) X(KV_DELETE) X(KV_SWEEP) X(LEASE_CLAIM)                                                                           \
          X(LEASE_RELEASE) X(ORDER_INSERT) X(CONVERSION_CANDIDATE)                                                                          \
              X(CONVERSION_MARK) X(REPORT_TOTALS) X(REPORT_REVENUE)                                                                         \
                  X(REPORT_VARIANT_COUNT)                                                                                                   \
                      X(REPORT_VARIANTS) /* The web console (issue 17): its                                                                 \
                                          * sessions, the demand report, a                                                                  \
                                          * variant's restocked events. */                                                                  \
      X(SESSION_INSERT) X(SESSION_GET) X(SESSION_DELETE) X(SESSION_PRUNE)                                                                   \
          X(DEMAND_LIST) X(DEMAND_COUNT) X(DEMAND_LIST_CHANNEL)                                                                             \
              X(DEMAND_COUNT_CHANNEL) X(EVENT_LIST_VARIANT)                                                                                 \
                  X(EVENT_COUNT_VARIANT) /* Several nodes on one database                                                                   \
                                          * (issue 14): the locks a write                                                                   \
                                          * takes on PostgreSQL (no-ops on                                                                  \
                                          * SQLite's single writer), lease                                                                  \
                                          * renewal, and the node registry                                                                  \
                                          * (no-ops on SQLite, one node). */                                                                \
      X(VARIANT_LOCK) X(EVENT_LOCK) X(DELIVERY_RENEW) X(DELIVERY_OWNERS)                                                                    \
          X(META_ADD) X(NODE_BEAT) X(NODE_LIST) X(NODE_PEERS)                                                                               \
              X(NODE_DELETE) /* Batches (StoreDriver.batches): a group's                                                                    \
                                subscribes in one statement. */                                                                             \
      X(IDS_RESERVE) X(SUBSCRIBE_MANY)

typedef enum {
#define STORE_SQL_ENUM(name) SQL_##name,
  STORE_STATEMENTS(STORE_SQL_ENUM)
#undef STORE_SQL_ENUM
      SQL_COUNT_
} StmtId;

#endif
