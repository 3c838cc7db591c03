-- busted on LuaJIT (scripts/busted sets the paths)
require "busted.runner"({ standalone = false })
