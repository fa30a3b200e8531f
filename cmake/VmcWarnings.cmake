# SPDX-License-Identifier: GPL-2.0-or-later
# Project-wide warning flags (see STYLE: -Wall -Wextra -Wformat=2 ...), each
# added only when the compiler (gcc or clang) knows it.
include(CheckCCompilerFlag)
set(VMC_WARN_FLAGS
	-Wall -Wextra -Wformat=2 -Wstrict-prototypes -Wmissing-declarations
	-Wmissing-prototypes -Wvla -Wwrite-strings -Wshadow -Wpointer-arith
	-Wno-unused-parameter -Wno-missing-field-initializers
	# snprintf truncation of messages into bounded buffers is deliberate
	-Wno-format-truncation)
foreach(flag ${VMC_WARN_FLAGS})
	string(MAKE_C_IDENTIFIER "VMC_HAS${flag}" var)
	check_c_compiler_flag(${flag} ${var})
	if(${var})
		add_compile_options(${flag})
	endif()
endforeach()
if(VMC_WERROR)
	add_compile_options(-Werror)
endif()
add_compile_definitions(_GNU_SOURCE _FILE_OFFSET_BITS=64)
