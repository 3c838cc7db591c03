# luaray -- one non-recursive Makefile; every output goes under build/.
# Quiet by default; `make V=1` shows the commands.

V ?= 0
Q := $(if $(filter 1,$(V)),,@)
say = $(if $(filter 1,$(V)),,@printf '  %-6s %s\n' $(1) $(2);)

BUILD ?= build
CC ?= cc
PKGS := luajit libsodium openssl libcares

# pkg-config is only consulted once the dependencies are installed, so
# `make` on a fresh machine first runs scripts/deps.sh (the stamp below).
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS = $(shell pkg-config --libs $(PKGS) 2>/dev/null)

WARN := -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
	      -Wpointer-arith -Wno-unused-parameter
OPT ?= -O2 -g
SAN ?=
CFLAGS_ALL = -std=c11 -D_GNU_SOURCE $(OPT) $(SAN) $(WARN) -Werror=implicit-function-declaration \
	           -fPIC -fvisibility=hidden -Icore -Icore/include $(PKG_CFLAGS) $(CFLAGS)
LIBS = $(PKG_LIBS) -lev -lm

LIB_DIRS := base crypto vmess net route inbound outbound daemon
LIB_SRCS := $(sort $(foreach d,$(LIB_DIRS),$(wildcard core/$(d)/*.c))) core/api.c
LIB_OBJS := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
# the executable adds the CLI, the Lua bridge and the embedded Lua modules
EMBED_LUA := luaray.config=lua/luaray/config.lua luaray.link=lua/luaray/link.lua \
             luaray.daemon=lua/luaray/daemon.lua luaray.cdef=$(BUILD)/lua/luaray/cdef.lua
EMBED_SRC := $(BUILD)/gen/embedded_lua.c
MAIN_OBJS := $(BUILD)/obj/core/main.o $(BUILD)/obj/core/script/bridge.o $(BUILD)/obj/gen/embedded_lua.o
DEPS := $(LIB_OBJS:.o=.d) $(MAIN_OBJS:.o=.d)

DEPS_STAMP := $(BUILD)/.deps-ok

.PHONY: all deps test check asan run clean
all: $(BUILD)/libluaray.so $(BUILD)/luaray $(BUILD)/lua/luaray/cdef.lua

deps: $(DEPS_STAMP)
$(DEPS_STAMP): scripts/deps.sh
	$(Q)bash scripts/deps.sh
	$(Q)mkdir -p $(@D) && touch $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/libluaray.so: $(LIB_OBJS)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -shared -o $@ $^ $(LIBS) $(LDFLAGS)

$(BUILD)/luaray: $(LIB_OBJS) $(MAIN_OBJS)
	$(call say,LD,$@)
	$(Q)$(CC) $(SAN) -Wl,-E -o $@ $^ $(LIBS) $(LDFLAGS)

$(EMBED_SRC): scripts/embed-lua $(foreach m,$(EMBED_LUA),$(lastword $(subst =, ,$(m))))
	$(call say,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)luajit scripts/embed-lua $@ $(EMBED_LUA)

$(BUILD)/obj/gen/embedded_lua.o: $(EMBED_SRC)
	$(call say,CC,$<)
	$(Q)mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS_ALL) -c $< -o $@

$(BUILD)/lua/luaray/cdef.lua: core/include/luaray/api.h scripts/gen-cdef
	$(call say,GEN,$@)
	$(Q)mkdir -p $(@D)
	$(Q)luajit scripts/gen-cdef $< $@

test: all
	$(Q)bash scripts/test.sh

check: all
	$(Q)luajit scripts/gen-cdef core/include/luaray/api.h /dev/stdout >/dev/null

# AddressSanitizer + UBSan build of the library, then every spec against it.
asan:
	$(Q)$(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" all
	$(Q)LURAY_BUILD=build/asan LURAY_ASAN=1 bash scripts/test.sh

run: all
	$(Q)$(BUILD)/luaray

clean:
	$(call say,RM,$(BUILD))
	$(Q)rm -rf $(BUILD)

-include $(DEPS)
