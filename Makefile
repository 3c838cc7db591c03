# luaray -- one non-recursive Makefile; every output goes under build/.
# Quiet by default; `make V=1` shows the commands.

V ?= 0
Q := $(if $(filter 1,$(V)),,@)
say = $(if $(filter 1,$(V)),,@printf '  %-6s %s\n' $(1) $(2);)

BUILD ?= build
CC ?= cc
PKGS := luajit libsodium openssl libcares libnghttp2 libprotobuf-c hiredis
# routing data (core/route/domain_set.c, geodata.c): regexps, .mmdb
PKGS += libpcre2-8 libmaxminddb

# pkg-config is only consulted once the dependencies are installed, so
# `make` on a fresh machine first runs scripts/deps.sh (the stamp below).
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
	      -Wpointer-arith -Wno-unused-parameter
OPT ?= -O2 -g
SAN ?=
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(SAN) $(WARN) -Werror=implicit-function-declaration \
	           -fPIC -fvisibility=hidden -Icore -Icore/include -I$(PROTO_GEN) $(PKG_CFLAGS) $(CFLAGS)
LIBS = $(PKG_LIBS) -lev -lm

# The v2ray API's messages (core/daemon/proto/*.proto): C made by protoc-c
# at build time under $(BUILD)/gen/proto (never committed), included as
# <name.pb-c.h>
PROTO_SRCS := $(sort $(wildcard core/daemon/proto/*.proto))
PROTO_GEN := $(BUILD)/gen/proto
PROTO_C := $(PROTO_SRCS:core/daemon/proto/%.proto=$(PROTO_GEN)/%.pb-c.c)
PROTO_H := $(PROTO_C:.c=.h)
PROTO_OBJS := $(PROTO_C:$(BUILD)/gen/%.c=$(BUILD)/obj/gen/%.o)

LIB_DIRS := base crypto vmess net stream route dispatch inbound outbound daemon
LIB_SRCS := $(sort $(foreach d,$(LIB_DIRS),$(wildcard core/$(d)/*.c))) core/api.c
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o) $(PROTO_OBJS)
# the executable adds the CLI, the Lua bridge and the embedded Lua modules
EMBED_LUA := luaray.config=lua/luaray/config.lua luaray.link=lua/luaray/link.lua \
             luaray.control=lua/luaray/control.lua luaray.json=lua/luaray/json.lua \
             luaray.daemon=lua/luaray/daemon.lua luaray.cdef=$(BUILD)/lua/luaray/cdef.lua \
             luaray.convert=lua/luaray/convert.lua
EMBED_SRC := $(BUILD)/gen/embedded_lua.c
MAIN_OBJS := $(BUILD)/obj/core/main.o $(BUILD)/obj/core/script/bridge.o \
             $(BUILD)/obj/core/script/pattern.o $(BUILD)/obj/gen/embedded_lua.o \
             $(BUILD)/obj/gen/commit.o
# the commit `luaray version` reports (git describe --always --dirty, or
# "unknown" outside git): rewritten only when it changes, so a build
# recompiles this one file and relinks the executable, nothing more
COMMIT_SRC := $(BUILD)/gen/commit.c
DEPS := $(LIB_OBJS:.o=.d) $(MAIN_OBJS:.o=.d)

DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps test check check-layering asan asan-build tsan tsan-build soak run clean FORCE
all: $(BUILD)/libluaray.so $(BUILD)/luaray $(BUILD)/lua/luaray/cdef.lua

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	$(Q)bash scripts/deps.sh
	$(Q)mkdir -p $(@D) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP) $(PROTO_H)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

# one protoc-c run makes both files of a .proto (a grouped pattern rule);
# kept (not intermediate) so the objects' dependency files can name them
.SECONDARY: $(PROTO_C) $(PROTO_H)
$(PROTO_GEN)/%.pb-c.c $(PROTO_GEN)/%.pb-c.h: core/daemon/proto/%.proto | $(DEPS_STAMP)
	$(call say,PROTOC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)protoc-c --proto_path=core/daemon/proto --c_out=$(PROTO_GEN) $<

$(BUILD)/obj/gen/proto/%.o: $(PROTO_GEN)/%.c | $(PROTO_H)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libluaray.so: $(LIB_OBJS)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -shared -o $@ $^ $(LIBS) $(LDFLAGS)

$(BUILD)/luaray: $(LIB_OBJS) $(MAIN_OBJS)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -Wl,-E -o $@ $^ $(LIBS) $(LDFLAGS)

$(EMBED_SRC): scripts/embed-lua $(foreach m,$(EMBED_LUA),$(lastword $(subst =, ,$(m)))) | $(DEPS_STAMP)
	$(call say,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)luajit scripts/embed-lua $@ $(EMBED_LUA)

$(BUILD)/obj/gen/embedded_lua.o: $(EMBED_SRC)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(COMMIT_SRC): FORCE
	$(Q)mkdir -p $(@D)
	$(Q)line="const char lr_build_commit[] = \"$$(git -C '$(CURDIR)' describe --always --dirty 2>/dev/null || echo unknown)\";"; \
	  if [ "$$(cat $@ 2>/dev/null)" != "$$line" ]; then printf '%s\n' "$$line" > $@; fi

$(BUILD)/obj/gen/commit.o: $(COMMIT_SRC)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/lua/luaray/cdef.lua: core/include/luaray/api.h scripts/gen-cdef | $(DEPS_STAMP)
	$(call say,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)luajit scripts/gen-cdef $< $@

test: all
	$(Q)bash scripts/test.sh

check: all
	$(Q)luajit scripts/gen-cdef core/include/luaray/api.h /dev/stdout >/dev/null

# The include layering of core/ (base < crypto < vmess < net < inbound/outbound
# < daemon < main.c; script/ only through script/bridge.h): the rank table is
# in scripts/check-layering, known violations in scripts/layering-allow.
# `make test` runs it as a TAP stream of its own.
check-layering:
	$(Q)luajit scripts/check-layering

# AddressSanitizer + UBSan build of the library and the daemon (build/asan),
# then every spec against it (scripts/asan-specs.sh; `make test` runs it too).
asan-build: $(DEPS_STAMP)
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all

asan:
	$(Q)bash scripts/asan-specs.sh | bash scripts/ci-summary

# ThreadSanitizer build of the daemon (build/tsan), then the specs that run
# several worker threads against it (scripts/tsan-specs.sh; in `make test`).
tsan-build: $(DEPS_STAMP)
	$(Q)$(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=thread" all

tsan:
	$(Q)bash scripts/tsan-specs.sh | bash scripts/ci-summary

# The long soak forms (issue "Hardening", item "Soak"): spec/e2e/soak_spec.lua
# for LURAY_SOAK_MINUTES (default 30) minutes of mixed load with a SIGHUP a
# minute, and the LURAY_SOAK=1 forms of spec/e2e/hardening_spec.lua (5,000
# replays, 200,000 churn connections); ends with "N passed, N failed".
# `make test` runs the 5-minute form of the soak.
soak: all
	$(Q)LURAY_SOAK=1 LURAY_SOAK_MINUTES=$${LURAY_SOAK_MINUTES:-30} bash scripts/busted -o TAP \
	    spec/e2e/soak_spec.lua spec/e2e/hardening_spec.lua 2>&1 | bash scripts/ci-summary

# make run PORTS="10087 1081 8081": the embedded default on other ports
# (VMess, SOCKS5, HTTP; spaces or commas), through `luaray --ports`
comma := ,
space := $(subst ,, )
run: all
	$(Q)$(BUILD)/luaray$(if $(strip $(PORTS)), --ports '$(subst $(space),$(comma),$(strip $(PORTS)))')

clean:
	$(call say,RM,$(BUILD))
	$(Q)rm -rf $(BUILD)

# ---------------------------------------------------------------------------
# make install / make uninstall (README "Installing as a service").
#   PREFIX (/usr/local), DESTDIR (a staging root), SYSCONFDIR (/etc),
#   SYSTEMD_UNIT_DIR ($(PREFIX)/lib/systemd/system); BINDIR, DATADIR,
#   MANDIR, DOCDIR from PREFIX.
# The executable needs no file of the build tree at run time: the Lua
# modules are embedded (package.preload), it does not link libluaray.so
# (that is for the specs' FFI), and it has no RPATH.  The unit, the man page
# and the default config name the default paths (/usr/local/bin/luaray,
# /usr/local/share/..., /etc/luaray): those are rewritten to the paths
# installed to.
# $(SYSCONFDIR)/luaray/config.lua is written only when there is none, from
# packaging/config.lua with a fresh user UUID (`luaray uuid`), mode 0640 and
# group luaray if that group exists (and no DESTDIR); uninstall keeps it.
# (A package built from a DESTDIR tree should make that file at install
# time, on the target, rather than ship one UUID to every machine.)
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
BINDIR ?= $(PREFIX)/bin
DATADIR ?= $(PREFIX)/share/luaray
MANDIR ?= $(PREFIX)/share/man
DOCDIR ?= $(PREFIX)/share/doc/luaray
SYSTEMD_UNIT_DIR ?= $(PREFIX)/lib/systemd/system
INSTALL ?= install
INSTALL_EXAMPLES := $(sort $(wildcard examples/*.lua))
INSTALL_CONFIG := $(DESTDIR)$(SYSCONFDIR)/luaray/config.lua
INSTALL_PATHS := sed -e 's|/usr/local/bin/|$(BINDIR)/|g' \
                     -e 's|/usr/local/share/luaray|$(DATADIR)|g' \
                     -e 's|/usr/local/share/doc/luaray|$(DOCDIR)|g' \
                     -e 's|/usr/local/lib/systemd/system|$(SYSTEMD_UNIT_DIR)|g' \
                     -e 's|/usr/local/|$(PREFIX)/|g' \
                     -e 's|/etc/luaray|$(SYSCONFDIR)/luaray|g'

.PHONY: install uninstall
install: $(BUILD)/luaray
	$(call say,INSTALL,$(DESTDIR)$(PREFIX))
	$(Q)$(INSTALL) -d -m 0755 $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/examples \
	    $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(DOCDIR) $(DESTDIR)$(SYSTEMD_UNIT_DIR) \
	    $(DESTDIR)$(SYSCONFDIR)/luaray
	$(Q)$(INSTALL) -m 0755 $(BUILD)/luaray $(DESTDIR)$(BINDIR)/luaray
	$(Q)$(INSTALL) -m 0644 $(INSTALL_EXAMPLES) $(DESTDIR)$(DATADIR)/examples/
	$(Q)$(INSTALL) -m 0644 README.md LICENSE $(DESTDIR)$(DOCDIR)/
	$(Q)$(INSTALL_PATHS) packaging/luaray.1 > $(DESTDIR)$(MANDIR)/man1/luaray.1.tmp
	$(Q)chmod 0644 $(DESTDIR)$(MANDIR)/man1/luaray.1.tmp
	$(Q)mv -f $(DESTDIR)$(MANDIR)/man1/luaray.1.tmp $(DESTDIR)$(MANDIR)/man1/luaray.1
	$(Q)$(INSTALL_PATHS) packaging/luaray.service > $(DESTDIR)$(SYSTEMD_UNIT_DIR)/luaray.service.tmp
	$(Q)chmod 0644 $(DESTDIR)$(SYSTEMD_UNIT_DIR)/luaray.service.tmp
	$(Q)mv -f $(DESTDIR)$(SYSTEMD_UNIT_DIR)/luaray.service.tmp $(DESTDIR)$(SYSTEMD_UNIT_DIR)/luaray.service
	$(Q)set -e; if [ -e '$(INSTALL_CONFIG)' ]; then \
	      echo "install: $(INSTALL_CONFIG) exists: kept as it is"; \
	    else \
	      uuid=$$($(BUILD)/luaray uuid); test -n "$$uuid"; \
	      group=; \
	      if [ -z '$(DESTDIR)' ] && [ "$$(id -u)" = 0 ] && getent group luaray >/dev/null 2>&1; then \
	        group='-g luaray'; \
	      fi; \
	      (umask 077; $(INSTALL_PATHS) -e "s|@UUID@|$$uuid|" packaging/config.lua > '$(INSTALL_CONFIG).tmp'); \
	      $(INSTALL) -m 0640 $$group '$(INSTALL_CONFIG).tmp' '$(INSTALL_CONFIG)'; \
	      rm -f '$(INSTALL_CONFIG).tmp'; \
	      echo "install: wrote $(INSTALL_CONFIG) (a VMess server on port 10086, user $$uuid)"; \
	    fi

uninstall:
	$(call say,RM,$(DESTDIR)$(PREFIX))
	$(Q)rm -f $(DESTDIR)$(BINDIR)/luaray $(DESTDIR)$(MANDIR)/man1/luaray.1 \
	    $(DESTDIR)$(SYSTEMD_UNIT_DIR)/luaray.service \
	    $(DESTDIR)$(DOCDIR)/README.md $(DESTDIR)$(DOCDIR)/LICENSE \
	    $(addprefix $(DESTDIR)$(DATADIR)/examples/,$(notdir $(INSTALL_EXAMPLES)))
	$(Q)rmdir $(DESTDIR)$(DATADIR)/examples $(DESTDIR)$(DATADIR) $(DESTDIR)$(DOCDIR) 2>/dev/null || true
	$(Q)if [ -e '$(INSTALL_CONFIG)' ]; then echo "uninstall: $(INSTALL_CONFIG) kept (remove it by hand)"; fi

-include $(DEPS)

# ---------------------------------------------------------------------------
# benchmarks (design.md section 4): side by side with v2ray and ss-libev.
#   make bench           3 repetitions (~15 min)   -> build/bench/results.md,
#   make bench-quick     1 repetition (< 3 min)       results.json, chart.png
#   make bench-callgrind instructions per relayed byte and per handshake,
#                        compared with scripts/bench/baseline.json
# scripts/bench-deps.sh installs shadowsocks-libev, gnuplot-nox and valgrind.
BENCH_DIR := $(BUILD)/bench
BENCH_TOOLS := $(BENCH_DIR)/load $(BENCH_DIR)/sink

.PHONY: bench bench-quick bench-callgrind bench-deps bench-transports bench-pinned
bench-deps:
	$(Q)bash scripts/bench-deps.sh

$(BENCH_TOOLS): $(BENCH_DIR)/%: scripts/bench/%.c scripts/bench/common.h
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) -std=c11 -D_GNU_SOURCE -O2 -g -Wall -Wextra -o $@ $< -lm

bench: all bench-deps $(BENCH_TOOLS)
	$(Q)scripts/bench/run

bench-quick: all bench-deps $(BENCH_TOOLS)
	$(Q)scripts/bench/run --quick

bench-callgrind: all bench-deps
	$(Q)LURAY_BUILD=$(BUILD) bash scripts/bench/callgrind.sh

# The transport chains through ../shared/bench, the harness the targets are
# judged with (split pinning: load + client on CPU 0, server + sink on CPU 1;
# v2ray with GOMAXPROCS=1): ws, ws+tls for luaray and v2ray 4.34, grpc and
# grpc+tls for luaray (scripts/bench/judged/). About 10 minutes.
JUDGED_BENCH ?= ../shared/bench/bench.py
bench-transports: all bench-deps
	$(Q)test -f $(JUDGED_BENCH) || { echo "bench-transports: no $(JUDGED_BENCH) (the shared bench harness)"; exit 2; }
	$(Q)python3 $(JUDGED_BENCH) scripts/bench/judged/systems/v2ray-ws-tls-aes-128-gcm.toml \
	    scripts/bench/judged/systems/luaray-ws-tls-aes-128-gcm.toml \
	    scripts/bench/judged/systems/v2ray-ws-aes-128-gcm.toml \
	    scripts/bench/judged/systems/luaray-ws-aes-128-gcm.toml \
	    scripts/bench/judged/systems/luaray-grpc-tls-aes-128-gcm.toml \
	    scripts/bench/judged/systems/luaray-grpc-aes-128-gcm.toml \
	    --tests up,down,conc,idle --idle 1000 --runs 3 --out $(BUILD)/bench/judged-$$(date +%Y%m%d-%H%M%S)
# Bulk (aes-128-gcm, chacha20-poly1305) and the connection rate through
# ../shared/bench under split pinning and unpinned in one run, beside v2ray
# 4.34, the lean C relay sketch and ss-libev, then the server's system calls
# per GiB (scripts/bench/pinned.sh). About 6 minutes. PINS=split for one.
PINS ?= split,none
bench-pinned: all bench-deps
	$(Q)LURAY_BUILD=$(BUILD) bash scripts/bench/pinned.sh --pins $(PINS)
# (end of benchmarks)

# ---------------------------------------------------------------------------
# fuzzing (spec/fuzz/README.md): libFuzzer targets for every parser of peer bytes.
#   make fuzz-build   the targets (clang, -fsanitize=fuzzer,address,undefined)
#   make fuzz         CI-sized run: every target for FUZZ_TIME s (default 20),
#                     FUZZ_JOBS at a time; a table of executions and findings
#                     (`make test` runs it with FUZZ_TIME=$FUZZ_CI_TIME, 10)
#   make fuzz-long    every target for FUZZ_LONG_RUNS executions (2,000,000)
#   make fuzz-replay  the seed corpora through engine-less builds ($(CC) with
#                     ASan+UBSan and spec/fuzz/targets/driver.c as main)
# Outputs under $(BUILD)/fuzz; spec/fuzz/corpus/<target>/ is only read.
FUZZ_CC ?= clang
FUZZ_DIR := $(BUILD)/fuzz
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -std=c11 -D_GNU_SOURCE -O1 -g -fno-omit-frame-pointer $(WARN) \
              -Icore -Icore/include -Ispec/fuzz/targets -I$(PROTO_GEN) $(PKG_CFLAGS)
FUZZ_LIBS := -lssl -lcrypto -lsodium -lm
FUZZ_TARGETS := fuzz_req_aead_1user fuzz_req_legacy_1user fuzz_req_1000users \
                fuzz_resp fuzz_body fuzz_socks_addr fuzz_socks fuzz_http \
                fuzz_sniff fuzz_vmess_link fuzz_mux fuzz_proxyproto fuzz_tls \
                fuzz_ws_frames fuzz_http_upgrade \
                fuzz_gun fuzz_h2s fuzz_gunc fuzz_h2c fuzz_metrics_http fuzz_v2api \
                fuzz_http_resp fuzz_convert
# the codec alone (no libev, no Lua); the inbound targets add socks.c,
# http.c and sock.c with net/conn.c replaced by spec/fuzz/targets/fuzz_conn.c
FUZZ_CODEC := $(sort $(wildcard core/base/*.c core/crypto/*.c core/vmess/*.c)) core/api.c
FUZZ_INBOUND := core/inbound/socks.c core/inbound/http.c core/net/sock.c \
                spec/fuzz/targets/fuzz_conn.c
fuzz_req_aead_1user_SRC := spec/fuzz/targets/fuzz_req.c
fuzz_req_aead_1user_DEF := -DFZ_NUSERS=1 -DFZ_LEGACY=0
fuzz_req_legacy_1user_SRC := spec/fuzz/targets/fuzz_req.c
fuzz_req_legacy_1user_DEF := -DFZ_NUSERS=1 -DFZ_LEGACY=1
fuzz_req_1000users_SRC := spec/fuzz/targets/fuzz_req.c
fuzz_req_1000users_DEF := -DFZ_NUSERS=1000 -DFZ_LEGACY=1
fuzz_socks_addr_EXTRA := $(FUZZ_INBOUND)
fuzz_socks_EXTRA := $(FUZZ_INBOUND)
fuzz_http_EXTRA := $(FUZZ_INBOUND)
fuzz_sniff_EXTRA := core/route/sniff.c
fuzz_proxyproto_EXTRA := core/stream/proxyproto.c
# luaray.metrics' request parser (pure)
fuzz_metrics_http_EXTRA := core/daemon/metrics_http.c
# WebSocket / HTTPUpgrade (core/stream/ws.c): the frame layer over a fake
# layer below, and the upgrade request and reply
fuzz_ws_frames_EXTRA := core/stream/ws.c core/net/stream.c core/net/sock.c
fuzz_http_upgrade_EXTRA := core/stream/ws.c core/net/stream.c core/net/sock.c
# Mux.Cool: mux.c with net/conn.c modelled inside spec/fuzz/targets/fuzz_mux.c
fuzz_mux_EXTRA := core/inbound/mux.c core/net/sock.c
# Mux.Cool as a client: mux_client.c with net/conn.c and the VMess dial
# modelled inside spec/fuzz/targets/fuzz_mux_client.c
FUZZ_TARGETS += fuzz_mux_client
fuzz_mux_client_EXTRA := core/outbound/mux_client.c core/net/sock.c
# XUDP as a client: xudp_client.c with net/conn.c and the dispatch
# modelled inside spec/fuzz/targets/fuzz_xudp_client.c
FUZZ_TARGETS += fuzz_xudp_client
fuzz_xudp_client_EXTRA := core/inbound/xudp_client.c core/net/sock.c
# TLS server side: stream/tls.c over a socket pair (OpenSSL, our callbacks and BIO)
fuzz_tls_EXTRA := core/stream/tls.c core/net/stream.c
# gRPC gun: the codec alone, and the HTTP/2 server session (nghttp2) with
# its owner modelled in the target
fuzz_gun_EXTRA := core/stream/grpc.c
fuzz_gun_LIBS := -lnghttp2
fuzz_h2s_EXTRA := core/stream/grpc.c
fuzz_h2s_LIBS := -lnghttp2
fuzz_gunc_EXTRA := core/stream/grpc.c
fuzz_gunc_LIBS := -lnghttp2
fuzz_h2c_EXTRA := core/stream/grpc.c
fuzz_h2c_LIBS := -lnghttp2
# the v2ray API's request side: HTTP/2 session, gRPC framing, protobuf
# (protoc-c's code) and the services, with the daemon's side faked
fuzz_v2api_EXTRA := core/daemon/v2api_svc.c core/daemon/v2api_h2.c $(PROTO_C)
fuzz_v2api_LIBS := -lnghttp2 -lprotobuf-c
# the response parser of luaray.http.request (net/http_resp.c, pure)
fuzz_http_resp_EXTRA := core/net/http_resp.c
# routing data files: geosite/geoip .dat (protobuf-c) and .mmdb
FUZZ_TARGETS += fuzz_geodata
fuzz_geodata_EXTRA := core/route/geodata.c core/route/domain_set.c core/route/cidr_set.c \
                      $(PROTO_GEN)/geodata.pb-c.c
fuzz_geodata_LIBS := -lprotobuf-c -lpcre2-8 -lmaxminddb
# link.lua under LuaJIT (no codec needed, linked anyway for one link rule)
fuzz_vmess_link_DEF = -DFZ_LINK_LUA='"$(CURDIR)/lua/luaray/link.lua"'
fuzz_vmess_link_LIBS := -lluajit-5.1
# convert.lua (luaray convert / import) with json.lua and link.lua, under LuaJIT
fuzz_convert_DEF = -DFZ_LUA_DIR='"$(CURDIR)/lua"'
fuzz_convert_LIBS := -lluajit-5.1
fuzz_src = $(or $($(1)_SRC),spec/fuzz/targets/$(1).c)

FUZZ_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/bin/%)
FUZZ_REPLAY_BINS := $(FUZZ_TARGETS:%=$(FUZZ_DIR)/replay/%)
FUZZ_DEPS :=

# $(1) flavour (lf: libFuzzer, clang; rp: replay, $(CC)), $(2) compiler,
# $(3) extra compile flags
define fuzz_flavour
$(FUZZ_DIR)/$(1)/obj/%.o: %.c | $(DEPS_STAMP) $(PROTO_H)
	$$(call say,CC,$$<)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$(2) $$(FUZZ_CFLAGS) $$(FUZZ_SAN) $(3) -MMD -MP -c $$< -o $$@
FUZZ_DEPS += $(FUZZ_DIR)/$(1)/obj/*/*.d $(FUZZ_DIR)/$(1)/obj/*/*/*.d $(FUZZ_DIR)/$(1)/obj/*/*/*/*.d $(FUZZ_DIR)/$(1)/main/*.d
endef
$(eval $(call fuzz_flavour,lf,$$(FUZZ_CC),-fsanitize=fuzzer-no-link))
$(eval $(call fuzz_flavour,rp,$$(CC),))

# $(1) target: its main object in both flavours, the fuzzer and the replay
define fuzz_target
$(FUZZ_DIR)/lf/main/$(1).o: $(call fuzz_src,$(1)) | $(DEPS_STAMP) $(PROTO_H)
	$$(call say,CC,$$@)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$$(FUZZ_CC) $$(FUZZ_CFLAGS) $$(FUZZ_SAN) -fsanitize=fuzzer-no-link $$($(1)_DEF) -MMD -MP -c $$< -o $$@
$(FUZZ_DIR)/rp/main/$(1).o: $(call fuzz_src,$(1)) | $(DEPS_STAMP) $(PROTO_H)
	$$(call say,CC,$$@)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$$(CC) $$(FUZZ_CFLAGS) $$(FUZZ_SAN) $$($(1)_DEF) -MMD -MP -c $$< -o $$@
$(FUZZ_DIR)/bin/$(1): $(FUZZ_DIR)/lf/main/$(1).o $$(patsubst %.c,$(FUZZ_DIR)/lf/obj/%.o,$$(FUZZ_CODEC) $$($(1)_EXTRA))
	$$(call say,LD,$$@)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $$@ $$^ $$($(1)_LIBS) $$(FUZZ_LIBS)
$(FUZZ_DIR)/replay/$(1): $(FUZZ_DIR)/rp/main/$(1).o $(FUZZ_DIR)/rp/obj/spec/fuzz/targets/driver.o $$(patsubst %.c,$(FUZZ_DIR)/rp/obj/%.o,$$(FUZZ_CODEC) $$($(1)_EXTRA))
	$$(call say,LD,$$@)
	$$(Q)mkdir -p $$(@D)
	$$(Q)$$(CC) $$(FUZZ_SAN) -o $$@ $$^ $$($(1)_LIBS) $$(FUZZ_LIBS)
endef
$(foreach t,$(FUZZ_TARGETS),$(eval $(call fuzz_target,$(t))))

.PHONY: fuzz-build fuzz fuzz-long fuzz-replay-build fuzz-replay
fuzz-build: $(FUZZ_BINS)
fuzz-replay-build: $(FUZZ_REPLAY_BINS)

fuzz: fuzz-build
	$(Q)FUZZ_DIR=$(FUZZ_DIR) bash scripts/fuzz.sh ci $(FUZZ_TARGETS)

fuzz-long: fuzz-build
	$(Q)FUZZ_DIR=$(FUZZ_DIR) bash scripts/fuzz.sh long $(FUZZ_TARGETS)

fuzz-replay: fuzz-replay-build
	$(Q)FUZZ_DIR=$(FUZZ_DIR) bash scripts/fuzz.sh replay $(FUZZ_TARGETS)

-include $(wildcard $(FUZZ_DEPS))
# end of fuzzing
