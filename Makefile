# smtpd - build, run and test.  `make`, `make run`, `make test` (README.md).
#
#   make SELECTOR=select     build with the select() backend (default epoll)
#   make TLS=0               build without OpenSSL: no STARTTLS, no --smtps-port
#                            (its objects go to build/<selector>-notls)
#   make check               unit tests + e2e suite on the default build,
#                            without the tests marked slow: the quick loop
#   make test                unit tests + e2e suite on epoll with TLS, select
#                            without TLS and an ASan+UBSan build with TLS
#   make fuzz                run the libFuzzer harnesses for a while
#   make graph               print the module graph and its cycles, redraw
#                            docs/diagrams/modules.svg (docs/design.md)

CC        ?= cc
SELECTOR  ?= epoll
OPT       ?= -O2 -g
SAN       ?=
TLS       ?= 1
# builds without TLS keep their objects apart: build/epoll-notls, ...
TLS_SUFFIX = $(if $(filter 0,$(TLS)),-notls,)
BUILD     ?= build/$(SELECTOR)$(TLS_SUFFIX)
ifneq ($(TLS),0)
OPENSSL_CFLAGS := $(shell pkg-config --cflags openssl 2>/dev/null)
OPENSSL_LIBS   := $(shell pkg-config --libs openssl 2>/dev/null || echo MISSING)
ifeq ($(OPENSSL_LIBS),MISSING)
$(error OpenSSL not found by pkg-config: apt-get install libssl-dev pkg-config, or make TLS=0)
endif
CPPFLAGS  += -DSMTPD_TLS $(OPENSSL_CFLAGS)
TLS_LIBS   = $(OPENSSL_LIBS)
endif
CPPFLAGS  += -D_GNU_SOURCE -Iinclude
CFLAGS    += -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes $(OPT) $(SAN)
LDFLAGS   += $(SAN)
LDLIBS    += -lpthread -lcrypt
PYTHON    ?= /usr/bin/python3
PORT_ARGS ?=

SERVER_SRC = smtpd.c smtpd_args.c log.c stats.c \
             smtp_session.c smtp_state.c smtp_tls.c smtp_commands.c \
             smtp_envelope.c smtp_data.c smtp_accept.c smtp_reply.c smtp_proxy.c smtp_limits.c \
             smtp_bdat.c smtp_utf8.c \
             parser.c \
             auth_sasl.c auth_login.c auth_throttle.c auth_users.c auth_passwd.c \
             maildir.c maildir_commit.c maildir_spool.c maildir_quota.c maildir_quota_rule.c \
             maildir_commit_steps.c maildir_journal.c maildir_checkpoint.c maildir_journal_record.c maildir_replay.c maildir_sha256.c \
             transport.c transform.c transform_errpipe.c monitor.c \
             selector.c selector_$(SELECTOR).c worker.c buffer.c \
             metrics.c metrics_http.c \
             addr_aliases.c addr_resolve.c addr_load.c
ifneq ($(TLS),0)
SERVER_SRC += transport_tls.c
endif
SERVER_OBJ = $(SERVER_SRC:%.c=$(BUILD)/%.o)
MANAGER_OBJ = $(BUILD)/manager.o $(BUILD)/manager_args.o
UNIT_TESTS = $(patsubst tests/%.c,%,$(wildcard tests/unit_*.c))
# objects a unit test may link: everything but main()
LIB_OBJ    = $(filter-out $(BUILD)/smtpd.o,$(SERVER_OBJ))

.SECONDARY:

.PHONY: all run test test-lane check unit e2e e2e-epoll e2e-select e2e-asan test-deps \
        clean fuzz bench install graph

all: smtpd manager

# rm first: cp onto a binary that is running fails with "Text file busy".
# Phony, so that `make TLS=0` after `make` (or back) really swaps the copy.
.PHONY: smtpd manager
smtpd: $(BUILD)/smtpd
	rm -f $@ && cp $< $@
manager: $(BUILD)/manager
	rm -f $@ && cp $< $@

$(BUILD)/smtpd: $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(TLS_LIBS) $(LDLIBS)
$(BUILD)/manager: $(MANAGER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard include/*.h) | $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(BUILD)/tests/%.o: tests/%.c $(wildcard include/*.h tests/*.h) | $(BUILD)/tests
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(TLS_LIBS) $(LDLIBS)

$(BUILD) $(BUILD)/tests:
	mkdir -p $@

# The demo user of `make run` (README.md): demo / demo. With TLS, a
# self-signed demo certificate (ECDSA P-256) is made once in build/demo-tls
# and the server offers STARTTLS on 2525 and implicit TLS on 4650.
DEMO_TLS  = build/demo-tls
ifeq ($(TLS),0)
RUN_TLS_ARGS =
else
RUN_TLS_ARGS = --tls-cert $(DEMO_TLS)/cert.pem --tls-key $(DEMO_TLS)/key.pem \
               --smtps-port 4650
endif

run: all $(if $(filter 0,$(TLS)),,$(DEMO_TLS)/cert.pem)
	./smtpd -u demo:demo $(RUN_TLS_ARGS) $(PORT_ARGS)

$(DEMO_TLS)/cert.pem:
	mkdir -p $(DEMO_TLS)
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
	  -keyout $(DEMO_TLS)/key.pem -out $@ -days 825 -subj /CN=localhost \
	  -addext subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
	chmod 600 $(DEMO_TLS)/key.pem

# ---- tests ------------------------------------------------------------

# python3-pytest, swaks, curl, msmtp, dovecot-imapd, clang + libFuzzer,
# valgrind, groff, libssl-dev, pkg-config, openssl, swaks's Perl TLS and
# IPv6 modules, fail2ban, whois (mkpasswd), graphviz, strace, haproxy,
# prometheus (with promtool), postfix:
# installed with apt-get when missing (e2e/deps.sh), which also unpacks
# Exim into /var/cache/smtpd-test/exim (a BDAT sender; not installable
# next to Postfix).
test-deps:
	@sh e2e/deps.sh

unit: $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
	@for t in $^; do echo "== $$t"; ./$$t || exit 1; done

# The suite runs in E2E_JOBS processes (python3-pytest-xdist): every test
# has its own ports (e2e/ports.py) and directories, and most of their time
# is waiting. -rs prints why each skipped test skipped. Each suite keeps
# its temporary files in build/pytest-NAME (emptied when it starts again).
E2E_JOBS ?= 4
# each e2e target first builds its binaries, BUILD_JOBS compilers at once
# (when make runs alone; under make -jN its compilers share those N)
BUILD_JOBS ?= 2
BUILD_J = $(if $(findstring jobserver,$(MAKEFLAGS)),,-j$(BUILD_JOBS))
E2E_ARGS ?=
E2E = $(PYTHON) -m pytest -q -p no:cacheprovider -rs -n $(E2E_JOBS) \
      --basetemp=$(CURDIR)/build/pytest-$@ $(E2E_ARGS) e2e

# epoll and ASan with TLS (unless make TLS=0 test), select always without:
# both builds are tested; the TLS tests skip on the one without, saying so.
EPOLL_DIR = build/epoll$(TLS_SUFFIX)
ASAN_DIR  = build/asan$(TLS_SUFFIX)

e2e-epoll:
	$(MAKE) $(BUILD_J) SELECTOR=epoll TLS=$(TLS) BUILD=$(EPOLL_DIR) $(EPOLL_DIR)/smtpd $(EPOLL_DIR)/manager
	SMTPD_BIN=$(CURDIR)/$(EPOLL_DIR)/smtpd MANAGER_BIN=$(CURDIR)/$(EPOLL_DIR)/manager $(E2E)
e2e-select:
	$(MAKE) $(BUILD_J) SELECTOR=select TLS=0 BUILD=build/select-notls \
	  build/select-notls/smtpd build/select-notls/manager
	SMTPD_BIN=$(CURDIR)/build/select-notls/smtpd SMTPD_SELECTOR=select \
	MANAGER_BIN=$(CURDIR)/build/select-notls/manager $(E2E)
e2e-asan:
	$(MAKE) $(BUILD_J) SELECTOR=epoll TLS=$(TLS) BUILD=$(ASAN_DIR) OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  $(ASAN_DIR)/smtpd $(ASAN_DIR)/manager unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87 \
	SMTPD_BIN=$(CURDIR)/$(ASAN_DIR)/smtpd MANAGER_BIN=$(CURDIR)/$(ASAN_DIR)/manager \
	SMTPD_SANITIZED=1 $(E2E)

# Two lanes at once, on the two cores this was made on: the ASan+UBSan
# build and suite (the longest), and ./smtpd, the unit tests, the epoll
# suite, then the select build and suite. While one lane waits on its
# servers, the other compiles or computes. Each suite prints its output
# whole when it ends (-Otarget).
test: test-deps
	@echo "make test: two lanes at once; each suite prints when it ends"
	$(MAKE) -j2 -Otarget --no-print-directory e2e-asan test-lane
	@echo "make test: all suites passed"
test-lane:
	$(MAKE) all
	$(MAKE) unit
	$(MAKE) e2e-epoll
	$(MAKE) e2e-select

# The quick loop while working: one build, the slow tests left out.
check: test-deps all unit
	$(MAKE) e2e-epoll E2E_ARGS='-m "not slow"'
	@echo "make check: unit tests and the quick e2e suite passed"

# ---- the module graph (docs/design.md, section 1) ----------------------
# Who uses whom, read from the objects (nm): every edge, every cycle, and
# the picture, families as clusters (Graphviz dot, e2e/deps.sh installs it).
graph: $(BUILD)/smtpd
	$(PYTHON) tools/modgraph.py --dot docs/diagrams/modules.dot $(BUILD)
	dot -Tsvg docs/diagrams/modules.dot -o docs/diagrams/modules.svg

# ---- benchmarks (not part of test; docs/benchmarks.md) -----------------
bench: all build/bench/journal_probe $(if $(filter 0,$(TLS)),,build/bench/tlsload $(DEMO_TLS)/cert.pem)
	bench/run.sh

# A batch made durable file by file or in one journal (docs/benchmarks.md,
# "The write-ahead journal"); run.sh builds it too.
build/bench/journal_probe: bench/journal_probe.c bench/bench_util.h maildir_sha256.c include/maildir_sha256.h
	mkdir -p build/bench
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude \
	  bench/journal_probe.c maildir_sha256.c -o $@

# The TLS load generator (docs/benchmarks.md section 8); not part of test.
build/bench/tlsload: bench/tlsload.c
	mkdir -p build/bench
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE $< -o $@ \
	  $(shell pkg-config --cflags --libs openssl) -lpthread

# SHA-256 speed by path, for the journal (docs/benchmarks.md); not part of test.
build/bench/sha256_speed: bench/sha256_speed.c maildir_sha256.c include/maildir_sha256.h
	mkdir -p build/bench
	$(CC) -std=c11 -O2 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude \
	  bench/sha256_speed.c maildir_sha256.c -o $@

# ---- fuzzing (clang + libFuzzer; docs/reliability.md) -----------------
FUZZ_CC    ?= clang
FUZZ_FLAGS  = -std=c11 -D_GNU_SOURCE -Iinclude -g -O1 \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TIME  ?= 60

build/fuzz/fuzz_parser: fuzz/fuzz_parser.c parser.c smtp_utf8.c auth_sasl.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_parser.c parser.c smtp_utf8.c auth_sasl.c -o $@
build/fuzz/fuzz_monitor: fuzz/fuzz_monitor.c monitor.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_monitor.c monitor.c -o $@
build/fuzz/fuzz_proxy: fuzz/fuzz_proxy.c smtp_proxy.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_proxy.c smtp_proxy.c -o $@

build/fuzz/fuzz_http: fuzz/fuzz_http.c metrics_http.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_http.c metrics_http.c -o $@

build/fuzz/fuzz_users: fuzz/fuzz_users.c auth_users.c parser.c smtp_utf8.c \
                       maildir_quota_rule.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_users.c auth_users.c parser.c smtp_utf8.c \
	  maildir_quota_rule.c -o $@

build/fuzz/fuzz_aliases: fuzz/fuzz_aliases.c addr_aliases.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_aliases.c addr_aliases.c -o $@

build/fuzz/fuzz_bdat: fuzz/fuzz_bdat.c smtp_bdat.c parser.c smtp_utf8.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_bdat.c smtp_bdat.c parser.c smtp_utf8.c -o $@

build/fuzz/fuzz_journal: fuzz/fuzz_journal.c maildir_journal_record.c maildir_sha256.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_journal.c maildir_journal_record.c maildir_sha256.c -o $@

# Each harness runs FUZZ_TIME seconds from the seed corpus; new inputs go
# to build/fuzz/corpus-*, so the corpus kept in git stays as it is.
fuzz: build/fuzz/fuzz_parser build/fuzz/fuzz_monitor build/fuzz/fuzz_users \
      build/fuzz/fuzz_proxy build/fuzz/fuzz_http build/fuzz/fuzz_aliases \
      build/fuzz/fuzz_bdat build/fuzz/fuzz_journal
	for h in parser monitor users proxy http aliases bdat journal; do \
	  mkdir -p build/fuzz/corpus-$$h && \
	  build/fuzz/fuzz_$$h -max_total_time=$(FUZZ_TIME) -max_len=16384 \
	    -artifact_prefix=build/fuzz/ build/fuzz/corpus-$$h fuzz/corpus/$$h \
	    || exit 1; \
	done

# ---- install ------------------------------------------------------------
PREFIX  ?= /usr/local
DESTDIR ?=

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin \
	  $(DESTDIR)$(PREFIX)/share/man/man8 $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0755 smtpd $(DESTDIR)$(PREFIX)/sbin/smtpd
	install -m 0755 manager $(DESTDIR)$(PREFIX)/bin/manager
	if [ -f smtpd.8 ]; then install -m 0644 smtpd.8 $(DESTDIR)$(PREFIX)/share/man/man8/; fi
	if [ -f manager.1 ]; then install -m 0644 manager.1 $(DESTDIR)$(PREFIX)/share/man/man1/; fi

clean:
	rm -rf build smtpd manager
