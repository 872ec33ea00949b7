# smtpd - build, run and test.  `make`, `make run`, `make test` (README.md).
#
#   make SELECTOR=select     build with the select() backend (default epoll)
#   make test                unit tests + e2e suite on epoll, select and an
#                            ASan+UBSan build
#   make fuzz                run the libFuzzer harnesses for a while

CC        ?= cc
SELECTOR  ?= epoll
OPT       ?= -O2 -g
SAN       ?=
BUILD     ?= build/$(SELECTOR)
CPPFLAGS  += -D_GNU_SOURCE -Iinclude
CFLAGS    += -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
             -Wmissing-prototypes $(OPT) $(SAN)
LDFLAGS   += $(SAN)
LDLIBS    += -lpthread
PYTHON    ?= /usr/bin/python3
PORT_ARGS ?=

SERVER_SRC = smtpd.c session.c commands.c delivery.c auth.c reply.c parser.c \
             maildir.c committer.c transform.c monitor.c buffer.c args.c \
             log.c stats.c errpipe.c selector.c selector_$(SELECTOR).c proxy.c
SERVER_OBJ = $(SERVER_SRC:%.c=$(BUILD)/%.o)
MANAGER_OBJ = $(BUILD)/manager.o
UNIT_TESTS = $(patsubst tests/%.c,%,$(wildcard tests/unit_*.c))
# objects a unit test may link: everything but main()
LIB_OBJ    = $(filter-out $(BUILD)/smtpd.o,$(SERVER_OBJ))

.SECONDARY:

.PHONY: all run test unit e2e e2e-epoll e2e-select e2e-asan test-deps \
        clean fuzz bench install

all: smtpd manager

# rm first: cp onto a binary that is running fails with "Text file busy"
smtpd: $(BUILD)/smtpd
	rm -f $@ && cp $< $@
manager: $(BUILD)/manager
	rm -f $@ && cp $< $@

$(BUILD)/smtpd: $(SERVER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/manager: $(MANAGER_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/%.o: %.c $(wildcard include/*.h) | $(BUILD)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(BUILD)/tests/%.o: tests/%.c $(wildcard include/*.h tests/*.h) | $(BUILD)/tests
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD) $(BUILD)/tests:
	mkdir -p $@

# The demo user of `make run` (README.md): demo / demo.
run: all
	./smtpd -u demo:demo $(PORT_ARGS)

# ---- tests ------------------------------------------------------------

# python3-pytest, swaks, curl, msmtp, dovecot-imapd, clang + libFuzzer,
# valgrind, groff, haproxy: installed with apt-get when missing (e2e/deps.sh).
test-deps:
	@sh e2e/deps.sh

unit: $(addprefix $(BUILD)/tests/,$(UNIT_TESTS))
	@for t in $^; do echo "== $$t"; ./$$t || exit 1; done

E2E = $(PYTHON) -m pytest -q -p no:cacheprovider e2e

e2e-epoll:
	$(MAKE) SELECTOR=epoll BUILD=build/epoll build/epoll/smtpd build/epoll/manager
	SMTPD_BIN=$(CURDIR)/build/epoll/smtpd MANAGER_BIN=$(CURDIR)/build/epoll/manager $(E2E)
e2e-select:
	$(MAKE) SELECTOR=select BUILD=build/select build/select/smtpd build/select/manager
	SMTPD_BIN=$(CURDIR)/build/select/smtpd MANAGER_BIN=$(CURDIR)/build/select/manager $(E2E)
e2e-asan:
	$(MAKE) SELECTOR=epoll BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	  SAN="-fsanitize=address,undefined -fno-sanitize-recover=all" \
	  build/asan/smtpd build/asan/manager unit
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=0:exitcode=86 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=87 \
	SMTPD_BIN=$(CURDIR)/build/asan/smtpd MANAGER_BIN=$(CURDIR)/build/asan/manager \
	SMTPD_SANITIZED=1 $(E2E)

test: test-deps all unit e2e-epoll e2e-select e2e-asan
	@echo "make test: all suites passed"

# ---- benchmarks (not part of test; docs/benchmarks.md) -----------------
bench: all
	bench/run.sh

# ---- fuzzing (clang + libFuzzer; docs/reliability.md) -----------------
FUZZ_CC    ?= clang
FUZZ_FLAGS  = -std=c11 -D_GNU_SOURCE -Iinclude -g -O1 \
              -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all
FUZZ_TIME  ?= 60

build/fuzz/fuzz_parser: fuzz/fuzz_parser.c parser.c auth.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_parser.c parser.c auth.c -o $@
build/fuzz/fuzz_monitor: fuzz/fuzz_monitor.c monitor.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_monitor.c monitor.c -o $@
build/fuzz/fuzz_proxy: fuzz/fuzz_proxy.c proxy.c $(wildcard include/*.h)
	mkdir -p build/fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) fuzz/fuzz_proxy.c proxy.c -o $@

# Each harness runs FUZZ_TIME seconds from the seed corpus; new inputs go
# to build/fuzz/corpus-*, so the corpus kept in git stays as it is.
fuzz: build/fuzz/fuzz_parser build/fuzz/fuzz_monitor build/fuzz/fuzz_proxy
	for h in parser monitor proxy; do \
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
