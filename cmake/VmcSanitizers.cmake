# SPDX-License-Identifier: GPL-2.0-or-later
# Sanitizer switches: -DVMC_ASAN=ON, -DVMC_UBSAN=ON, -DVMC_TSAN=ON.
set(_vmc_san "")
if(VMC_ASAN)
	list(APPEND _vmc_san address)
endif()
if(VMC_UBSAN)
	list(APPEND _vmc_san undefined)
endif()
if(VMC_TSAN)
	list(APPEND _vmc_san thread)
endif()
if(_vmc_san)
	string(REPLACE ";" "," _vmc_san_list "${_vmc_san}")
	add_compile_options(-fsanitize=${_vmc_san_list} -fno-omit-frame-pointer)
	add_link_options(-fsanitize=${_vmc_san_list})
	if(VMC_UBSAN)
		add_compile_options(-fno-sanitize-recover=undefined)
	endif()
endif()

# -DVMC_FUZZ=ON (clang): everything is built with libFuzzer's coverage
# instrumentation (fuzzer-no-link) and ASan + UBSan, so that the fuzz
# targets are guided by coverage of the parsers in the libraries they link,
# not only of their own few lines; the targets add -fsanitize=fuzzer.
if(VMC_FUZZ)
	add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
		-fno-sanitize-recover=undefined)
	add_link_options(-fsanitize=address,undefined)
endif()
