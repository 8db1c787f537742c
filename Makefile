# mailtlsd - build, test and install.
#
#   make                 build build/mailtlsd
#   make check           build and run every test (unit + integration)
#   make check SANITIZE=1  the same, built with ASan+UBSan into build/san/
#   make MBEDTLS=system check   build and test against the system's
#                        mbedTLS instead of 3.6 (into build/system/)
#   make mbedtls3        only build the pinned mbedTLS 3.6 into
#                        build/mbedtls3/ (make does it when it needs it)
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

# ---- which mbedTLS ----
#   MBEDTLS=auto (default)  the system's mbedTLS when it is 3.6, else the
#                           pinned 3.6 LTS built by scripts/mbedtls3 into
#                           build/mbedtls3 with mbedtls/mailtlsd_config.h and
#                           linked statically; when that cannot be built,
#                           the system's (2.28 on Debian 12), saying why
#   MBEDTLS=bundled         that 3.6 build, or fail
#   MBEDTLS=system          the system's, whatever its version (objects in
#                           build/system/)
#   MBEDTLS_PREFIX=DIR      an mbedTLS installed under DIR (build/DIR-build/)
# MBEDTLS_FALLBACK=no makes auto fail instead of using an older system
# library (the Debian package sets it).
MBEDTLS		?= auto
MBEDTLS_FALLBACK ?= yes
MBEDTLS_PREFIX	?=
MBEDTLS3	:= build/mbedtls3
MBEDTLS3_STAMP	:= $(MBEDTLS3)/.mailtlsd-built
MBEDTLS3_DEPS	:= scripts/mbedtls3 mbedtls/mailtlsd_config.h \
		   $(wildcard scripts/mbedtls3-patches/*.patch)
MBEDTLS_AUTO_MK	:= build/mbedtls-auto.mk
# Goals that need no mbedTLS decision (nothing is fetched or built for them).
NO_MBEDTLS_GOALS := clean distclean deps check-docs mbedtls3
NEED_MBEDTLS	:= $(filter-out $(NO_MBEDTLS_GOALS),$(or $(MAKECMDGOALS),all))

# The system's mbedTLS version number (0x03060700), or empty.
SYSTEM_MBEDTLS_VERSION := $(shell printf '\043include <mbedtls/version.h>\nMBEDTLS_VERSION_NUMBER\n' | \
	$(CC) $(CPPFLAGS) -E -P -x c - 2>/dev/null | tail -n 1)
SYSTEM_MBEDTLS_DOTTED := $(shell v='$(SYSTEM_MBEDTLS_VERSION)'; \
	case "$$v" in (0x*) echo $$((v >> 24)).$$((v >> 16 & 255)).$$((v >> 8 & 255));; \
	(*) echo "(none found)";; esac)
SYSTEM_MBEDTLS_36 := $(shell v='$(SYSTEM_MBEDTLS_VERSION)'; \
	case "$$v" in (0x*) [ $$((v)) -ge $$((0x03060000)) ] && \
	[ $$((v)) -lt $$((0x03070000)) ] && echo yes;; esac)

ifneq ($(MBEDTLS_PREFIX),)
MBEDTLS_USE	:= prefix
else ifeq ($(MBEDTLS),system)
MBEDTLS_USE	:= system
else ifeq ($(MBEDTLS),bundled)
MBEDTLS_USE	:= bundled
else ifeq ($(MBEDTLS),auto)
ifeq ($(SYSTEM_MBEDTLS_36),yes)
MBEDTLS_USE	:= system
else ifneq ($(NEED_MBEDTLS),)
# scripts/mbedtls3 --auto builds the library (or finds it up to date) and
# says in this file which one to use; make then reads it and restarts.
-include $(MBEDTLS_AUTO_MK)
MBEDTLS_USE	:= $(or $(MBEDTLS_AUTO),bundled)
ifeq ($(MBEDTLS_AUTO),system)
ifeq ($(MBEDTLS_FALLBACK),no)
$(error mbedTLS 3.6 cannot be built here: $(MBEDTLS_AUTO_WHY))
endif
$(info mailtlsd: building against the system's mbedTLS \
	$(SYSTEM_MBEDTLS_DOTTED), not 3.6: $(MBEDTLS_AUTO_WHY). With \
	mbedTLS 2.28 mailtlsd speaks TLS 1.2 only and warns at every start \
	that the library is past its end of life. To try 3.6 again: rm \
	$(MBEDTLS_AUTO_MK); see docs/building.md)
endif
else
MBEDTLS_USE	:= bundled
endif
else
$(error MBEDTLS=$(MBEDTLS): use auto, bundled or system)
endif

ifeq ($(MBEDTLS_USE),prefix)
BUILD_BASE	:= build/$(notdir $(abspath $(MBEDTLS_PREFIX)))-build
else ifeq ($(MBEDTLS),system)
BUILD_BASE	:= build/system
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

ifeq ($(MBEDTLS_USE),prefix)
# Without its headers the system's would be used, silently.
ifeq ($(wildcard $(MBEDTLS_PREFIX)/include/mbedtls/version.h),)
ifneq ($(NEED_MBEDTLS),)
$(error MBEDTLS_PREFIX=$(MBEDTLS_PREFIX) holds no mbedTLS headers)
endif
endif
MBEDTLS_CFLAGS	:= -I$(MBEDTLS_PREFIX)/include
MBEDTLS_LIBS	:= -L$(MBEDTLS_PREFIX)/lib -Wl,-rpath,$(abspath $(MBEDTLS_PREFIX))/lib \
		   -lmbedtls -lmbedx509 -lmbedcrypto
MBEDTLS_DEP	:=
else ifeq ($(MBEDTLS_USE),bundled)
# Static: the binary does not need build/mbedtls3 at run time.  Its
# mbedtls_* functions stay named in the dynamic symbol table, as they are
# in a shared library, for the fault injection's within= (dladdr()).
MBEDTLS_CFLAGS	:= -I$(MBEDTLS3)/include
MBEDTLS_LIBS	:= $(MBEDTLS3)/lib/libmbedtls.a $(MBEDTLS3)/lib/libmbedx509.a \
		   $(MBEDTLS3)/lib/libmbedcrypto.a \
		   -Wl,--export-dynamic-symbol='mbedtls_*'
MBEDTLS_DEP	:= $(MBEDTLS3_STAMP)
else
# Debian 12 ships no pkg-config file for mbedTLS; link its three libraries.
MBEDTLS_CFLAGS	:=
MBEDTLS_LIBS	:= -lmbedtls -lmbedx509 -lmbedcrypto
MBEDTLS_DEP	:=
endif
# Which library the objects of $(BUILD) were compiled against: when it
# changes (auto chose differently), everything is compiled again.
MBEDTLS_CHOICE	:= $(BUILD)/mbedtls.choice
MBEDTLS_CHOICE_TEXT := $(MBEDTLS_USE) $(MBEDTLS_PREFIX)

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
	uninstall clean distclean mbedtls-selftest FORCE

# ==== the daemon ============================================================

all: $(BUILD)/mailtlsd

$(BUILD)/mailtlsd: $(DAEMON_OBJS) $(MBEDTLS_DEP)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

$(BUILD)/daemon/%.o: daemon/%.c $(MBEDTLS_CHOICE) $(MBEDTLS_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

# ==== tests =================================================================

check: deps check-docs mbedtls-selftest unit-check integration-check
	@echo "make check: all tests passed"

# The include graph of daemon/ by module; fails on a cycle.
deps:
	$(PYTHON) scripts/deps daemon

# Every relative link and #anchor of the Markdown documentation resolves.
check-docs:
	$(PYTHON) scripts/check-links

unit-check: $(BUILD)/check_mailtlsd
	$(BUILD)/check_mailtlsd

# mbedTLS's own self-tests of the linked library, and the CA bundle parses.
mbedtls-selftest: $(BUILD)/mbedtls_selftest
	$(BUILD)/mbedtls_selftest

$(BUILD)/mbedtls_selftest: tests/mbedtls/selftest.c $(MBEDTLS_CHOICE) $(MBEDTLS_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(MBEDTLS_LIBS)

$(BUILD)/tests/unit/%.o: tests/unit/%.c $(MBEDTLS_CHOICE) $(MBEDTLS_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Idaemon -c -o $@ $<

$(BUILD)/tests/fuzz/%.o: tests/fuzz/%.c $(MBEDTLS_CHOICE) $(MBEDTLS_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Idaemon -c -o $@ $<

$(BUILD)/check_mailtlsd: $(UNIT_OBJS) $(LIB_OBJS) $(BUILD)/tests/fuzz/driver.o \
		$(BUILD)/tests/fuzz/login.o $(MBEDTLS_DEP)
	$(CC) $(ALL_LDFLAGS) -o $@ $(filter %.o,$^) $(CHECK_LIBS) $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

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

$(BUILD)/bench/%: bench/%.c $(MBEDTLS_CHOICE) $(MBEDTLS_DEP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS) -o $@ $< $(MBEDTLS_LIBS) $(EVENT_LIBS) $(OAUTH2_LIBS)

fuzz: $(FUZZ_BINS)
	tests/fuzz/run.sh $(FUZZ_DIR) $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-build: $(FUZZ_BINS)

$(FUZZ_DIR)/%.o: %.c $(MBEDTLS_DEP)
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

# The pinned mbedTLS 3.6 with mailtlsd's configuration, from Debian's
# source package: see scripts/mbedtls3 and docs/building.md.  make builds it
# when it needs it; make mbedtls3 only builds it.
mbedtls3:
	$(PYTHON) scripts/mbedtls3 $(MBEDTLS3)

$(MBEDTLS3_STAMP): $(MBEDTLS3_DEPS)
	$(PYTHON) scripts/mbedtls3 $(MBEDTLS3)

$(MBEDTLS_AUTO_MK): $(MBEDTLS3_DEPS)
	$(PYTHON) scripts/mbedtls3 --auto $(MBEDTLS3) $@

# Rewritten only when the choice changes, so that it dates the change.
$(MBEDTLS_CHOICE): FORCE
	@mkdir -p $(dir $@)
	@echo '$(MBEDTLS_CHOICE_TEXT)' | cmp -s - $@ || \
		echo '$(MBEDTLS_CHOICE_TEXT)' > $@

FORCE:

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
