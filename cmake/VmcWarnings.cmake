# SPDX-License-Identifier: GPL-2.0-or-later
# Project-wide warning flags (see STYLE: -Wall -Wextra -Wformat=2 ...).
include(CheckCCompilerFlag)
set(VMC_WARN_FLAGS
	-Wall -Wextra -Wformat=2 -Wstrict-prototypes -Wmissing-declarations
	-Wmissing-prototypes -Wvla -Wwrite-strings -Wshadow -Wpointer-arith
	-Wno-unused-parameter -Wno-missing-field-initializers
	-Wno-format-truncation)
foreach(flag ${VMC_WARN_FLAGS})
	add_compile_options(${flag})
endforeach()
if(VMC_WERROR)
	add_compile_options(-Werror)
endif()
add_compile_definitions(_GNU_SOURCE _FILE_OFFSET_BITS=64)
