# mailtlsd - build, test and install.
#
#   make                 build build/mailtlsd
#   make check           build and run every test (unit + integration)
#   make check SANITIZE=1  the same, built with ASan+UBSan into build/san/
#   make install PREFIX=/usr/local DESTDIR=... SYSCONFDIR=/etc [UNITDIR=...]
#   make uninstall       the same variables; the configuration stays

PREFIX		?= /usr/local
SYSCONFDIR	?= /etc
SBINDIR		?= $(PREFIX)/sbin
MANDIR		?= $(PREFIX)/share/man
UNITDIR		?= $(PREFIX)/lib/systemd/system
DESTDIR		?=

CC		?= cc
PKG_CONFIG	?= pkg-config
PYTHON		?= python3

ifeq ($(SANITIZE),1)
BUILD		?= build/san
SAN_FLAGS	:= -fsanitize=address,undefined -fno-sanitize-recover=all \
		   -fno-omit-frame-pointer
else
BUILD		?= build
SAN_FLAGS	:=
endif

# Debian 12 ships no pkg-config file for mbedTLS; link its three libraries.
MBEDTLS_PREFIX	?=
ifneq ($(MBEDTLS_PREFIX),)
MBEDTLS_CFLAGS	:= -I$(MBEDTLS_PREFIX)/include
MBEDTLS_LIBS	:= -L$(MBEDTLS_PREFIX)/lib -Wl,-rpath,$(abspath $(MBEDTLS_PREFIX))/lib \
		   -lmbedtls -lmbedx509 -lmbedcrypto
else
MBEDTLS_CFLAGS	:=
MBEDTLS_LIBS	:= -lmbedtls -lmbedx509 -lmbedcrypto
endif

EVENT_CFLAGS	:= $(shell $(PKG_CONFIG) --cflags libevent_core libevent_extra 2>/dev/null)
EVENT_LIBS	:= $(shell $(PKG_CONFIG) --libs libevent_core libevent_extra 2>/dev/null || echo -levent_core -levent_extra)
CHECK_CFLAGS	:= $(shell $(PKG_CONFIG) --cflags check 2>/dev/null)
CHECK_LIBS	:= $(shell $(PKG_CONFIG) --libs check 2>/dev/null || echo -lcheck -lsubunit -lm -lrt -lpthread)

VERSION		:= $(shell cat VERSION 2>/dev/null || echo 0.0.0)

CFLAGS		?= -O2 -g
WARN		:= -Wall -Wextra -Werror -Wshadow -Wpointer-arith -Wformat=2 \
		   -Wmissing-prototypes -Wstrict-prototypes
ALL_CFLAGS	:= -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE \
		   -DMAILTLSD_VERSION='"$(VERSION)"' $(WARN) $(CPPFLAGS) $(CFLAGS) \
		   $(SAN_FLAGS) $(MBEDTLS_CFLAGS) $(EVENT_CFLAGS) -MMD -MP
ALL_LDFLAGS	:= $(LDFLAGS) $(SAN_FLAGS)

DAEMON_SRCS	:= $(sort $(wildcard daemon/*.c))
DAEMON_OBJS	:= $(DAEMON_SRCS:%.c=$(BUILD)/%.o)
LIB_OBJS	:= $(filter-out $(BUILD)/daemon/main.o,$(DAEMON_OBJS))
UNIT_SRCS	:= $(sort $(wildcard tests/unit/*.c))
UNIT_OBJS	:= $(UNIT_SRCS:%.c=$(BUILD)/%.o)

.PHONY: all check unit-check integration-check clean install uninstall

all: $(BUILD)/mailtlsd

$(BUILD)/mailtlsd: $(DAEMON_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(MBEDTLS_LIBS) $(EVENT_LIBS)

$(BUILD)/daemon/%.o: daemon/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c -o $@ $<

$(BUILD)/tests/unit/%.o: tests/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(CHECK_CFLAGS) -Idaemon -c -o $@ $<

$(BUILD)/check_mailtlsd: $(UNIT_OBJS) $(LIB_OBJS)
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(CHECK_LIBS) $(MBEDTLS_LIBS) $(EVENT_LIBS)

check: unit-check integration-check
	@echo "make check: all tests passed"

unit-check: $(BUILD)/check_mailtlsd
	$(BUILD)/check_mailtlsd

integration-check: $(BUILD)/mailtlsd
	MAILTLSD=$(abspath $(BUILD)/mailtlsd) $(PYTHON) tests/integration/run.py

# The installed configuration is never overwritten (nor removed by
# uninstall); the unit gets the installed paths.
CONF_DEST	= $(DESTDIR)$(SYSCONFDIR)/mailtlsd/mailtlsd.conf
UNIT_SED	= sed -e 's|@SBINDIR@|$(SBINDIR)|g' \
		      -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g'

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

clean:
	rm -rf build

-include $(DAEMON_OBJS:.o=.d) $(UNIT_OBJS:.o=.d)
