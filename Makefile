# mailtlsd - build, test and install.
#
#   make                 build build/mailtlsd
#   make check           build and run every test (unit + integration)
#   make check SANITIZE=1  the same, built with ASan+UBSan into build/san/
#   make mbedtls3        fetch Debian 13's mbedTLS 3.6 source, build it into
#                        build/mbedtls3/ (nothing is installed system-wide)
#   make MBEDTLS_PREFIX=build/mbedtls3 check   build and test against it
#                        (into build/mbedtls3-build/, [san/ with SANITIZE=1])
#   make install PREFIX=/usr/local DESTDIR=... SYSCONFDIR=/etc [UNITDIR=...]
#   make uninstall       the same variables; the configuration stays
#   make valgrind-check  the integration tests marked valgrind, the daemon
#                        under valgrind memcheck
#   make bench | fuzz | soak | interop    tools: see their sections below
#
# Sections: variables; the daemon; tests; tools (bench, fuzz, soak,
# interop, mbedtls3); install and clean.

# ==== variables =============================================================

PREFIX		?= /usr/local
SYSCONFDIR	?= /etc
SBINDIR		?= $(PREFIX)/sbin
MANDIR		?= $(PREFIX)/share/man
UNITDIR		?= $(PREFIX)/lib/systemd/system
DESTDIR		?=

CC		?= cc
PKG_CONFIG	?= pkg-config
PYTHON		?= python3
# The integration tests run on Debian's pytest (python3-pytest,
# python3-pytest-xdist, python3-pytest-timeout): the system's interpreter.
PYTEST		?= /usr/bin/python3 -m pytest
PYTEST_JOBS	?= 4

# Another mbedTLS than the system's builds into its own tree, so switching
# between the two never mixes objects.
MBEDTLS_PREFIX	?=
MBEDTLS3	:= build/mbedtls3
ifneq ($(MBEDTLS_PREFIX),)
BUILD_BASE	:= build/$(notdir $(abspath $(MBEDTLS_PREFIX)))-build
else
BUILD_BASE	:= build
endif

ifeq ($(SANITIZE),1)
BUILD		?= $(BUILD_BASE)/san
SAN_FLAGS	:= -fsanitize=address,undefined -fno-sanitize-recover=all \
		   -fno-omit-frame-pointer
else
BUILD		?= $(BUILD_BASE)
SAN_FLAGS	:=
endif

# Debian 12 ships no pkg-config file for mbedTLS; link its three libraries.
ifneq ($(MBEDTLS_PREFIX),)
# Without its headers the system's would be used, silently.
ifeq ($(wildcard $(MBEDTLS_PREFIX)/include/mbedtls/version.h),)
ifneq ($(filter-out mbedtls3 clean distclean,$(or $(MAKECMDGOALS),all)),)
$(error MBEDTLS_PREFIX=$(MBEDTLS_PREFIX) holds no mbedTLS headers; for \
	$(MBEDTLS3) run "make mbedtls3" first)
endif
endif
MBEDTLS_CFLAGS	:= -I$(MBEDTLS_PREFIX)/include
MBEDTLS_LIBS	:= -L$(MBEDTLS_PREFIX)/lib -Wl,-rpath,$(abspath $(MBEDTLS_PREFIX))/lib \
		   -lmbedtls -lmbedx509 -lmbedcrypto
else
MBEDTLS_CFLAGS	:=
MBEDTLS_LIBS	:= -lmbedtls -lmbedx509 -lmbedcrypto
endif

EVENT_CFLAGS	:= $(shell $(PKG_CONFIG) --cflags libevent_core libevent_extra 2>/dev/null)
EVENT_LIBS	:= $(shell $(PKG_CONFIG) --libs libevent_core libevent_extra 2>/dev/null || echo -levent_core -levent_extra)
# OAuth2: Argon2id and sealing (libsodium), HTTPS to the provider's
# endpoints (libcurl), its JSON answers (jansson); see README.
OAUTH2_PKGS	:= libsodium libcurl jansson
OAUTH2_CFLAGS	:= $(shell $(PKG_CONFIG) --cflags $(OAUTH2_PKGS) 2>/dev/null)
OAUTH2_LIBS	:= $(shell $(PKG_CONFIG) --libs $(OAUTH2_PKGS) 2>/dev/null || echo -lsodium -lcurl -ljansson) -lpthread
CHECK_CFLAGS	:= $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS	:= $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

VERSION		:= $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CFLAGS		?= -O2 -g
WARN		:= -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wformat=2 \
		   -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS	:= -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
		   -DMAILTLSD_VERSION='"$(VERSION)"' $(WARN) $(CPPFLAGS) $(CFLAGS) \
		   $(SAN_FLAGS) $(MBEDTLS_CFLAGS) $(EVENT_CFLAGS) $(OAUTH2_CFLAGS) -MMD -MP
ALL_LDFLAGS	:= $(LDFLAGS) $(SAN_FLAGS)

DAEMON_SRCS	:= $(sort $(wildcard daemon/*.c))
DAEMON_OBJS	:= $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS	:= $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJS))
UNIT_SRCS	:= $(sort $(wildcard tests/unit/*.c))
UNIT_OBJS	:= $(UNIT_SRCS:%.c=$(BUILD)/%.o)

# ---- fuzzing and the soak test (issue 7) ----
#   make fuzz [FUZZ_SECONDS=60]   build each libFuzzer target with clang,
#                                 ASan and UBSan into build/fuzz/ and run
#                                 it for FUZZ_SECONDS; fails on any crash
#   make soak [SOAK_SECONDS=300] [SOAK_SESSIONS=2000]
#                                 sessions with churn through build/mailtlsd
#                                 to a local TLS server; fd and RSS checks
# make check replays the fuzz corpus through the same driver (check_fuzz.c).
FUZZ_CC		?= clang
FUZZ_SECONDS	?= 60
FUZZ_DIR	:= build/fuzz
FUZZ_TARGETS	:= config imap pop3 smtp login
FUZZ_SAN	:= -g -O1 -fno-omit-frame-pointer -fno-sanitize-recover=all
FUZZ_CFLAGS	:= -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
		   $(filter-out -Werror,$(WARN)) -Idaemon -Itests/fuzz \
		   $(MBEDTLS_CFLAGS) $(EVENT_CFLAGS) $(OAUTH2_CFLAGS) -MMD -MP
FUZZ_OBJS	:= $(patsubst %.c,$(FUZZ_DIR)/%.o,daemon/addr.c daemon/config.c \
		   daemon/log.c daemon/safefile.c \
		   daemon/proto.c daemon/proto_imap.c daemon/proto_pop3.c \
		   daemon/proto_smtp.c daemon/proto_local.c daemon/proto_oauth2.c \
		   tests/fuzz/driver.c tests/fuzz/login.c)
FUZZ_BINS	:= $(FUZZ_TARGETS:%=$(FUZZ_DIR)/fuzz_%)
SOAK_SECONDS	?= 300
SOAK_SESSIONS	?= 2000

# ---- fault injection (tests/integration/test_faults.py) ----
# Preloadable shims: one makes the daemon's allocations fail on request
# (tests/faults/failalloc.c), one swaps a file for a symbolic link right
# after the daemon opens it (tests/faults/swapfile.c).  Never sanitized:
# the tests skip them when the daemon is an ASan build, which must come
# first in the process and replaces malloc itself.
FAILALLOC_SO	:= build/tests/failalloc.so
SWAPFILE_SO	:= build/tests/swapfile.so

# ---- install ----
# The installed configuration is never overwritten (nor removed by
# uninstall); the unit gets the installed paths.
CONF_DEST	= $(DESTDIR)$(SYSCONFDIR)/mailtlsd/mailtlsd.conf
UNIT_SED	= sed -e 's|@SBINDIR@|$(SBINDIR)|g' \
		      -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

.PHONY: all check deps check-docs unit-check integration-check \
	valgrind-check bench fuzz fuzz-build soak interop mbedtls3 install \
	uninstall clean distclean

# ==== the daemon ============================================================

all: $(BUILD)/mailtlsd

$(BUILD)/mailtlsd: $(DAEMON_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

$(BUILD)/daemon/%.o: daemon/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# ==== tests =================================================================

check: deps check-docs unit-check integration-check
	@echo "make check: all tests passed"

# The include graph of daemon/ by module; fails on a cycle.
deps:
	$(PYTHON) scripts/deps daemon

# Every relative link and #anchor of the Markdown documentation resolves.
check-docs:
	$(PYTHON) scripts/check-links

unit-check: $(BUILD)/check_mailtlsd
	$(BUILD)/check_mailtlsd

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Idaemon -c -o $@ $<

$(BUILD)/tests/fuzz/%.o: tests/fuzz/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Idaemon -c -o $@ $<

$(BUILD)/check_mailtlsd: $(UNIT_OBJS) $(LIB_OBJS) $(BUILD)/tests/fuzz/driver.o \
		$(BUILD)/tests/fuzz/login.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

# pytest's summary line ("N passed, N skipped in Xs") ends the output.
integration-check: $(BUILD)/mailtlsd $(FAILALLOC_SO) $(SWAPFILE_SO)
	MAILTLSD=$(abspath $(BUILD)/mailtlsd) $(PYTEST) -q -rfEs \
		-n $(PYTEST_JOBS) tests/integration

build/tests/%.so: tests/faults/%.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -O2 -g -Wall -Wextra -Werror -shared -fPIC -o $@ $< -ldl

# make valgrind-check: the integration scenarios that do not depend on
# timing (marked @case(valgrind=True)), with the daemon under valgrind
# memcheck; any memory error or definite leak makes the daemon exit 99,
# which fails the test.
valgrind-check: $(BUILD)/mailtlsd
	printf '#!/bin/sh\nexec valgrind -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite --show-leak-kinds=definite %s "$$@"\n' \
		"$(abspath $(BUILD)/mailtlsd)" > $(BUILD)/valgrind-mailtlsd
	chmod +x $(BUILD)/valgrind-mailtlsd
	MAILTLSD=$(abspath $(BUILD)/valgrind-mailtlsd) $(PYTEST) -q -rfEs \
		-n $(PYTEST_JOBS) -m valgrind tests/integration

# ==== tools =================================================================

# make bench: performance side by side with stunnel4, a table on stdout and
# in $(BUILD)/bench/results.md (see bench/run.py; BENCH_QUICK=1 is short).
bench: $(BUILD)/mailtlsd $(BUILD)/bench/aead_speed $(BUILD)/bench/ssl_mem
	MAILTLSD=$(abspath $(BUILD)/mailtlsd) BENCH_OUT=$(abspath $(BUILD)/bench) \
	$(PYTHON) bench/run.py

$(BUILD)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

fuzz: $(FUZZ_BINS)
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) \
		-fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_OBJS)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -Werror $(FUZZ_SAN) \
		-fsanitize=fuzzer,address,undefined -o $@ \
		$(filter %.c %.o,$^) $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

.SECONDARY: $(FUZZ_OBJS)

soak: $(BUILD)/mailtlsd
	$(PYTHON) tests/soak/soak.py --daemon $(abspath $(BUILD)/mailtlsd) \
		--seconds $(SOAK_SECONDS) --sessions $(SOAK_SESSIONS)

# Interoperability suite (tests/interop): real Dovecot, Postfix and mail
# clients through mailtlsd, then the OAuth2 part (an authorisation server
# from npm, Dovecot and Postfix taking only bearer tokens). Needs root and
# tests/interop/setup.sh once. INTEROP_PART=clients or oauth2 runs one part.
interop: $(BUILD)/mailtlsd
	MAILTLSD=$(abspath $(BUILD)/mailtlsd) $(PYTHON) tests/interop/run.py

# Debian 13's mbedTLS 3.6 from its source package: see scripts/mbedtls3.
mbedtls3:
	$(PYTHON) scripts/mbedtls3 $(MBEDTLS3)

# ==== install and clean =====================================================

install: $(BUILD)/mailtlsd
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(SYSCONFDIR)/mailtlsd \
		$(DESTDIR)$(UNITDIR)
	install -m 0755 $(BUILD)/mailtlsd $(DESTDIR)$(SBINDIR)/mailtlsd
	install -m 0644 man/mailtlsd.8 $(DESTDIR)$(MANDIR)/man8/mailtlsd.8
	install -m 0644 man/mailtlsd.conf.5 $(DESTDIR)$(MANDIR)/man5/mailtlsd.conf.5
	@if [ -e $(CONF_DEST) ]; then \
		echo "keeping the existing $(CONF_DEST)"; \
	else \
		echo "install -m 0644 conf/mailtlsd.conf $(CONF_DEST)"; \
		install -m 0644 conf/mailtlsd.conf $(CONF_DEST); \
	fi
	$(UNIT_SED) systemd/mailtlsd.service.in \
		> $(DESTDIR)$(UNITDIR)/mailtlsd.service.tmp
	chmod 0644 $(DESTDIR)$(UNITDIR)/mailtlsd.service.tmp
	mv -f $(DESTDIR)$(UNITDIR)/mailtlsd.service.tmp \
		$(DESTDIR)$(UNITDIR)/mailtlsd.service
	install -m 0644 systemd/mailtlsd.socket $(DESTDIR)$(UNITDIR)/mailtlsd.socket

uninstall:
	rm -f $(DESTDIR)$(SBINDIR)/mailtlsd $(DESTDIR)$(MANDIR)/man8/mailtlsd.8 \
		$(DESTDIR)$(MANDIR)/man5/mailtlsd.conf.5 \
		$(DESTDIR)$(UNITDIR)/mailtlsd.service \
		$(DESTDIR)$(UNITDIR)/mailtlsd.socket
	@if [ -e $(CONF_DEST) ]; then \
		echo "kept $(CONF_DEST): remove it by hand if you wish"; \
	fi

# clean keeps the mbedTLS built by "make mbedtls3"; distclean removes it too.
clean:
	rm -rf $(filter-out $(MBEDTLS3),$(wildcard build/*))

distclean:
	rm -rf build

-include $(DAEMON_OBJS:.o=.d) $(UNIT_OBJS:.o=.d)
-include $(BUILD)/tests/fuzz/driver.d $(BUILD)/tests/fuzz/login.d
-include $(FUZZ_OBJS:.o=.d) $(FUZZ_BINS:=.d)
