# restockd: build, test and run.
#
#   make run     install missing packages, build, migrate, start on plugin.lua
#   make test    build under ASan+UBSan and run the whole test suite
#
# Every Debian package the project needs is listed in PKGS; `make deps` installs
# whichever are missing (as root, or through sudo).

PKGS := build-essential pkg-config lua5.4 liblua5.4-dev libuv1-dev \
        libsqlite3-dev libcurl4-openssl-dev libjansson-dev libssl-dev \
        libpq-dev node-llhttp lua-busted lua-socket lua-cjson
# What `make test` needs beyond the build: a PostgreSQL server for the specs
# of the PostgreSQL backend (spec/pg.sh starts a throwaway cluster), and its
# client (psql), with which specs look into the database.
TEST_PKGS := postgresql postgresql-client

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
PKG_LIBS   := lua5.4 libuv sqlite3 jansson libcrypto
# libcurl's and libpq's headers only: each library is loaded with dlopen on
# first use (core/curl_dl.h and core/pq_dl.h say why).
PKG_HDRS   := libcurl libpq

# Recursively expanded so that pkg-config runs after `deps` has installed it.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKG_LIBS) $(PKG_HDRS))
PKG_LDLIBS = $(shell pkg-config --libs $(PKG_LIBS)) -lm -ldl

VERSION  := 0.1.0
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wvla \
            -Wformat=2 -Wno-unused-parameter
# Where `require` finds the shipped Lua scripts (sendgrid, webhook).
SCRIPTS_DIR ?= $(CURDIR)/scripts
CSTD     := -std=c11 -D_GNU_SOURCE -DRESTOCKD_VERSION='"$(VERSION)"' \
            -DRESTOCKD_SCRIPTS_DIR='"$(SCRIPTS_DIR)"'
OPT      ?= -O2 -g
SAN      := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
            -fno-sanitize-recover=undefined -DRESTOCKD_DEBUG

SRCS := $(wildcard core/*.c)
SQLITE_MIGRATIONS := $(sort $(wildcard migrations/sqlite/*.sql))
POSTGRES_MIGRATIONS := $(sort $(wildcard migrations/postgres/*.sql))

REL_OBJS  := $(SRCS:core/%.c=build/release/%.o) \
             build/release/migrations_sqlite.o \
             build/release/migrations_postgres.o \
             $(addprefix build/release/llhttp_,api.o http.o llhttp.o)
ASAN_OBJS := $(SRCS:core/%.c=build/asan/%.o) build/asan/migrations_sqlite.o \
             build/asan/migrations_postgres.o \
             $(addprefix build/asan/llhttp_,api.o http.o llhttp.o)

UNIT_SRCS := $(wildcard spec/unit/*.c)
# The unit tests link every core object except the one holding main().
UNIT_CORE := $(filter-out build/asan/main.o,$(ASAN_OBJS))

.PHONY: all deps test-deps install-pkgs run test unit asan release clean \
        bench install

# `make install PREFIX=/usr/local` (DESTDIR is honoured for packaging).
PREFIX  ?= /usr/local
DESTDIR ?=
all: build/restockd

deps:
	@$(MAKE) --no-print-directory install-pkgs LIST="$(PKGS)"
test-deps:
	@$(MAKE) --no-print-directory install-pkgs LIST="$(TEST_PKGS)"
install-pkgs:
	@missing=""; for p in $(LIST); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends $$missing; \
	fi

release: build/restockd
asan: build/asan/restockd

build/restockd: $(REL_OBJS)
	$(CC) $(OPT) -o $@ $^ $(PKG_LDLIBS)

build/asan/restockd: $(ASAN_OBJS)
	$(CC) $(SAN) -o $@ $^ $(PKG_LDLIBS)

build/asan/unit_tests: $(UNIT_SRCS) $(UNIT_CORE) | deps
	$(CC) $(CSTD) $(WARN) $(SAN) $(PKG_CFLAGS) -Icore -I$(LLHTTP_INC) \
	  -o $@ $(UNIT_SRCS) $(UNIT_CORE) $(PKG_LDLIBS)

build/release/%.o: core/%.c $(wildcard core/*.h) | deps build/release
	$(CC) $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) -I$(LLHTTP_INC) -c -o $@ $<

build/asan/%.o: core/%.c $(wildcard core/*.h) | deps build/asan
	$(CC) $(CSTD) $(WARN) $(SAN) $(PKG_CFLAGS) -I$(LLHTTP_INC) -c -o $@ $<

# llhttp is compiled from the node-llhttp package's sources, with its own
# (relaxed) warnings: it is not our code to fix.
build/release/llhttp_%.o: | deps build/release
	$(CC) $(OPT) -w -I$(LLHTTP_INC) -c -o $@ $(LLHTTP_SRC)/$*.c
build/asan/llhttp_%.o: | deps build/asan
	$(CC) $(SAN) -w -I$(LLHTTP_INC) -c -o $@ $(LLHTTP_SRC)/$*.c

# The SQL files of migrations/BACKEND/ are compiled into the binary, so an
# installed restockd never goes looking for them.
build/gen/migrations_sqlite.c: $(SQLITE_MIGRATIONS) core/embed_migrations.sh | build/gen
	sh core/embed_migrations.sh sqlite $(SQLITE_MIGRATIONS) > $@.tmp && mv $@.tmp $@
build/gen/migrations_postgres.c: $(POSTGRES_MIGRATIONS) core/embed_migrations.sh | build/gen
	sh core/embed_migrations.sh postgres $(POSTGRES_MIGRATIONS) > $@.tmp && mv $@.tmp $@
build/release/migrations_%.o: build/gen/migrations_%.c core/store.h | deps build/release
	$(CC) $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) -Icore -c -o $@ $<
build/asan/migrations_%.o: build/gen/migrations_%.c core/store.h | deps build/asan
	$(CC) $(CSTD) $(WARN) $(SAN) $(PKG_CFLAGS) -Icore -c -o $@ $<

build/release build/asan build/gen:
	mkdir -p $@

plugin.lua:
	cp plugin.lua.example plugin.lua

run: build/restockd plugin.lua
	./build/restockd migrations run
	exec ./build/restockd start

test: build/asan/restockd build/asan/unit_tests | test-deps
	sh spec/run.sh

# The benchmark suite (bench/run.py) against the release build; wrk comes
# from Debian like everything else.
bench: build/restockd
	@command -v wrk >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	python3 bench/run.py

unit: build/asan/unit_tests
	./build/asan/unit_tests

# The binary finds the scripts at ../share/restockd/scripts next to itself;
# the migrations are compiled in (the SQL files are installed to read).
install: build/restockd
	install -D -m 755 build/restockd $(DESTDIR)$(PREFIX)/bin/restockd
	install -d $(DESTDIR)$(PREFIX)/share/restockd/scripts \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/sqlite \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/postgres \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/restockd/scripts/
	install -m 644 migrations/sqlite/*.sql \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/sqlite/
	install -m 644 migrations/postgres/*.sql \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/postgres/
	install -m 644 plugin.lua.example $(DESTDIR)$(PREFIX)/share/restockd/
	sed 's|@PREFIX@|$(PREFIX)|g' docs/restockd.service \
	  > $(DESTDIR)$(PREFIX)/lib/systemd/system/restockd.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/restockd.service

clean:
	rm -rf build
