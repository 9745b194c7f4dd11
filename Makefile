# restockd: build, test and run.
#
#   make run     install missing packages, build, migrate, start on plugin.lua
#   make test    also install the test tools, build under ASan+UBSan and run
#                the whole test suite
#
# The Debian packages that building and running need are listed in PKGS, and
# `make deps` installs whichever are missing (as root, or through sudo); those
# only the test suite needs are in TEST_PKGS, installed by `make test-deps`
# (which `make test` runs). node-llhttp brings nodejs with it: it is the only
# Debian package that ships llhttp's C sources, which the build compiles.

PKGS := build-essential pkg-config liblua5.4-dev libuv1-dev \
        libsqlite3-dev libcurl4-openssl-dev libjansson-dev libssl-dev \
        node-llhttp libidn2-dev libunistring-dev libpq-dev libyajl-dev
# The Lua interpreter and busted run the specs; lua-socket, lua-cjson and
# lua-filesystem are the specs' own modules; python3 runs the fake HTTP
# servers (openssl makes their certificates); curl runs the documentation's
# walk-throughs; sqlite3 lets specs look inside a database; python3-aiosmtpd
# is the real SMTP server of the senders' specs (and of the bench);
# chromium, chromium-driver and python3-selenium run the browser tests of
# the widget and the console (spec/browser/). postgresql is the server of
# the specs' second pass (spec/pg.sh makes a throwaway cluster), and psql
# their way into it.
TEST_PKGS := lua5.4 lua-busted lua-socket lua-cjson lua-filesystem python3 \
             openssl curl sqlite3 python3-aiosmtpd chromium chromium-driver \
             python3-selenium postgresql postgresql-client

LLHTTP_SRC := /usr/share/llhttp
LLHTTP_INC := /usr/share/include/llhttp
PKG_LIBS   := lua5.4 libuv sqlite3 jansson yajl libcrypto libidn2
# libcurl's and libpq's headers only: each library is loaded with dlopen on
# first use (core/curl_dl.h and core/pq_dl.h say why).
PKG_HDRS   := libcurl libpq

# Recursively expanded so that pkg-config runs after `deps` has installed it.
# libunistring (email local parts) ships no pkg-config file in Debian 12.
PKG_CFLAGS = $(shell pkg-config --cflags $(PKG_LIBS) $(PKG_HDRS))
# The one symbol exported for a library that restockd loads later (see
# _gnutls_global_init_skip in core/pq_dl.c).
PKG_LDLIBS = $(shell pkg-config --libs $(PKG_LIBS)) -lunistring -lm -ldl \
             -Wl,--export-dynamic-symbol=_gnutls_global_init_skip

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
# The widget and the console (web/), compiled in by core/embed_web.sh.
WEB_FILES := $(sort $(wildcard web/*.html web/*.css web/*.js))
# The words of the pages, one file per language, compiled in (core/pages.c).
PAGE_TEXTS := $(sort $(wildcard web/texts/*.txt))
# What is generated into build/gen/ and compiled with every build.
GEN := migrations_sqlite migrations_postgres texts_gen web_assets

REL_OBJS  := $(SRCS:core/%.c=build/release/%.o) $(GEN:%=build/release/%.o) \
             $(addprefix build/release/llhttp_,api.o http.o llhttp.o)
ASAN_OBJS := $(SRCS:core/%.c=build/asan/%.o) $(GEN:%=build/asan/%.o) \
             $(addprefix build/asan/llhttp_,api.o http.o llhttp.o)

# ThreadSanitizer: the code shared between the loop and the storage threads
# is checked by running the specs once against this build (make tsan).
TSAN      := -O1 -g -fsanitize=thread -fno-omit-frame-pointer -DRESTOCKD_DEBUG
TSAN_OBJS := $(SRCS:core/%.c=build/tsan/%.o) $(GEN:%=build/tsan/%.o) \
             $(addprefix build/tsan/llhttp_,api.o http.o llhttp.o)

UNIT_SRCS := $(wildcard spec/unit/*.c)
# The unit tests link every core object except the one holding main().
UNIT_CORE := $(filter-out build/asan/main.o,$(ASAN_OBJS))

.PHONY: all deps test-deps run test unit asan tsan release clean bench \
        install fuzz fuzz-deps fuzz-build

# `make install PREFIX=/usr/local` (DESTDIR is honoured for packaging).
PREFIX  ?= /usr/local
DESTDIR ?=
all: build/restockd

# $(call install_missing,TARGET,PACKAGES): installs those of PACKAGES that
# are not installed yet, without the packages they merely recommend.
define install_missing
	@missing=""; for p in $(2); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make $(1): installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,deps,$(PKGS))

# After deps, never beside it: two apt-get runs at once would fight over
# dpkg's lock under `make -j`.
test-deps: | deps
	$(call install_missing,test-deps,$(TEST_PKGS))

release: build/restockd
asan: build/asan/restockd

build/restockd: $(REL_OBJS)
	$(CC) $(OPT) -o $@ $^ $(PKG_LDLIBS)

build/asan/restockd: $(ASAN_OBJS)
	$(CC) $(SAN) -o $@ $^ $(PKG_LDLIBS)

build/tsan/restockd: $(TSAN_OBJS)
	$(CC) $(TSAN) -o $@ $^ $(PKG_LDLIBS)

build/tsan/unit_tests: $(UNIT_SRCS) $(filter-out build/tsan/main.o,$(TSAN_OBJS)) | deps
	$(CC) $(CSTD) $(WARN) $(TSAN) $(PKG_CFLAGS) -Icore -I$(LLHTTP_INC) \
	  -o $@ $^ $(PKG_LDLIBS)

build/tsan/%.o: core/%.c $(wildcard core/*.h) | deps build/tsan
	$(CC) $(CSTD) $(WARN) $(TSAN) $(PKG_CFLAGS) -I$(LLHTTP_INC) -c -o $@ $<
build/tsan/llhttp_%.o: | deps build/tsan
	$(CC) $(TSAN) -w -I$(LLHTTP_INC) -c -o $@ $(LLHTTP_SRC)/$*.c
$(GEN:%=build/tsan/%.o): build/tsan/%.o: build/gen/%.c core/store.h | deps build/tsan
	$(CC) $(CSTD) $(WARN) $(TSAN) $(PKG_CFLAGS) -Icore -c -o $@ $<

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
build/gen/texts_gen.c: $(PAGE_TEXTS) core/embed_texts.sh | build/gen
	sh core/embed_texts.sh $(PAGE_TEXTS) > $@.tmp && mv $@.tmp $@
$(GEN:%=build/release/%.o): build/release/%.o: build/gen/%.c core/store.h | deps build/release
	$(CC) $(CSTD) $(WARN) $(OPT) $(PKG_CFLAGS) -Icore -c -o $@ $<
$(GEN:%=build/asan/%.o): build/asan/%.o: build/gen/%.c core/store.h | deps build/asan
	$(CC) $(CSTD) $(WARN) $(SAN) $(PKG_CFLAGS) -Icore -c -o $@ $<
build/gen/web_assets.c: $(WEB_FILES) core/embed_web.sh | build/gen
	sh core/embed_web.sh $(WEB_FILES) > $@.tmp && mv $@.tmp $@
# The generated assets also follow the header that declares them.
$(foreach b,release asan tsan fuzz,build/$(b)/web_assets.o): core/web.h core/http.h

build/release build/asan build/tsan build/gen:
	mkdir -p $@

plugin.lua:
	cp plugin.lua.example plugin.lua

run: build/restockd plugin.lua
	./build/restockd migrations run
	exec ./build/restockd start

test: build/asan/restockd build/asan/unit_tests build/test/fail_threads.so \
      test-deps fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh spec/run.sh

# The benchmark suite (bench/run.py) against the release build; wrk comes
# from Debian like everything else.
bench: build/restockd
	@command -v wrk >/dev/null || { apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk; }
	python3 bench/run.py

# A process out of threads, for the specs: an LD_PRELOAD shim that fails
# pthread_create past a count (spec/support/fail_threads.c says why).
build/test/fail_threads.so: spec/support/fail_threads.c | deps
	mkdir -p build/test
	$(CC) -shared -fPIC -O1 -Wall -Wextra -Werror -o $@ $< -ldl

unit: build/asan/unit_tests
	./build/asan/unit_tests

# The unit tests and every spec against the ThreadSanitizer build; a data
# race report fails the test it happened in.
tsan: build/tsan/restockd build/tsan/unit_tests build/test/fail_threads.so
	TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1" ./build/tsan/unit_tests
	RESTOCKD=build/tsan/restockd TSAN_OPTIONS="halt_on_error=0" \
	  sh spec/run.sh --specs-only

# The binary finds the scripts at ../share/restockd/scripts next to itself;
# the migrations are compiled in (the SQL files are installed to read). The
# docs go to share/doc/restockd, where the unit's Documentation= points.
# The unit's @PREFIX@ is filled in on its settings' lines only: its comment
# says PREFIX, and stays as it was written.
install: build/restockd
	install -D -m 755 build/restockd $(DESTDIR)$(PREFIX)/bin/restockd
	install -d $(DESTDIR)$(PREFIX)/share/restockd/scripts \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/sqlite \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/postgres \
	  $(DESTDIR)$(PREFIX)/share/doc/restockd \
	  $(DESTDIR)$(PREFIX)/lib/systemd/system
	install -m 644 scripts/*.lua $(DESTDIR)$(PREFIX)/share/restockd/scripts/
	install -d $(DESTDIR)$(PREFIX)/share/restockd/scripts/templates
	install -m 644 scripts/templates/* \
	  $(DESTDIR)$(PREFIX)/share/restockd/scripts/templates/
	install -m 644 migrations/sqlite/*.sql \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/sqlite/
	install -m 644 migrations/postgres/*.sql \
	  $(DESTDIR)$(PREFIX)/share/restockd/migrations/postgres/
	install -m 644 plugin.lua.example $(DESTDIR)$(PREFIX)/share/restockd/
	install -m 644 docs/*.md docs/openapi.yaml \
	  $(DESTDIR)$(PREFIX)/share/doc/restockd/
	sed '/^[#;]/!s|@PREFIX@|$(PREFIX)|g' docs/restockd.service \
	  > $(DESTDIR)$(PREFIX)/lib/systemd/system/restockd.service
	chmod 644 $(DESTDIR)$(PREFIX)/lib/systemd/system/restockd.service

# Fuzz targets (fuzz/), built with clang's libFuzzer, ASan and UBSan. `make
# fuzz` runs each for FUZZ_SECONDS and fails on a crash, a leak or a hang;
# `make test` runs them too (fuzz/run.sh, docs/security.md).
FUZZ_PKGS    := clang libclang-rt-14-dev
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 10
FUZZ_TARGETS := email url router token utf8 json_text lua_json http api
# The application behind the HTTP target (fuzz/http_handler.h).
FUZZ_HTTP_HANDLER ?= fuzz/http_handler.c
FUZZ_SAN     := -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=undefined
FUZZ_CORE    := buf xmalloc strlist email utf8 url router token json_text lua_json \
                http log isotime
FUZZ_OBJS    := $(FUZZ_CORE:%=build/fuzz/%.o) \
                $(addprefix build/fuzz/llhttp_,api.o http.o llhttp.o)

fuzz-deps:
	@missing=""; for p in $(FUZZ_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' \
	    || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "make fuzz-deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q \
	    --no-install-recommends $$missing; \
	fi

fuzz-build: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%)

fuzz: fuzz-build
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh fuzz/run.sh

build/fuzz/%.o: core/%.c $(wildcard core/*.h) | deps fuzz-deps build/fuzz
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_SAN) \
	  -fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS) \
	  -I$(LLHTTP_INC) -c -o $@ $<
build/fuzz/llhttp_%.o: | deps fuzz-deps build/fuzz
	$(FUZZ_CC) $(FUZZ_SAN) -fsanitize=fuzzer-no-link,address,undefined -w \
	  -I$(LLHTTP_INC) -c -o $@ $(LLHTTP_SRC)/$*.c
build/fuzz/fuzz_http: fuzz/fuzz_http.c $(FUZZ_HTTP_HANDLER) $(FUZZ_OBJS) \
                      $(wildcard fuzz/*.h)
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_SAN) \
	  -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Icore -Ifuzz \
	  -I$(LLHTTP_INC) -o $@ fuzz/fuzz_http.c $(FUZZ_HTTP_HANDLER) \
	  $(FUZZ_OBJS) $(PKG_LDLIBS)
# The request path into the real API: every core object but main()'s.
FUZZ_API_OBJS := $(filter-out build/fuzz/main.o,$(SRCS:core/%.c=build/fuzz/%.o)) \
                 $(GEN:%=build/fuzz/%.o) \
                 $(addprefix build/fuzz/llhttp_,api.o http.o llhttp.o)
$(GEN:%=build/fuzz/%.o): build/fuzz/%.o: build/gen/%.c core/store.h | deps fuzz-deps build/fuzz
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_SAN) \
	  -fsanitize=fuzzer-no-link,address,undefined $(PKG_CFLAGS) -Icore \
	  -c -o $@ $<
build/fuzz/fuzz_api: fuzz/fuzz_http.c fuzz/http_api_handler.c \
                     $(FUZZ_API_OBJS) $(wildcard fuzz/*.h)
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_SAN) \
	  -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Icore -Ifuzz \
	  -I$(LLHTTP_INC) -o $@ fuzz/fuzz_http.c fuzz/http_api_handler.c \
	  $(FUZZ_API_OBJS) $(PKG_LDLIBS)
build/fuzz/fuzz_%: fuzz/fuzz_%.c $(FUZZ_OBJS) $(wildcard fuzz/*.h)
	$(FUZZ_CC) $(CSTD) $(WARN) $(FUZZ_SAN) \
	  -fsanitize=fuzzer,address,undefined $(PKG_CFLAGS) -Icore -Ifuzz \
	  -I$(LLHTTP_INC) -o $@ $< $(FUZZ_OBJS) $(PKG_LDLIBS)
build/fuzz:
	mkdir -p $@

clean:
	rm -rf build
