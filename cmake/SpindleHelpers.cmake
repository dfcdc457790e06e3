# Helpers every spindle target is built through, so warnings, sanitizers and
# frame pointers are applied in one place (as marl_set_target_options does).

# LIBRARY: the target is one of spindle's own modules (spindle_add_module).
function(spindle_set_target_options target)
  cmake_parse_arguments(O "LIBRARY" "" "" ${ARGN})
  get_target_property(type ${target} TYPE)
  if(type STREQUAL "INTERFACE_LIBRARY")
    return()
  endif()
  target_compile_options(${target} PRIVATE -Wall -Wextra -Wno-unused-parameter
    -fno-omit-frame-pointer)
  # Frames larger than a page are probed page by page as they are made, so
  # a big local buffer on a fiber's small stack faults on the guard page
  # (reported as a stack overflow) instead of writing past it into another
  # stack (docs/runtime.md "Guards").
  if(SPINDLE_STACK_CLASH_FLAG)
    target_compile_options(${target} PRIVATE ${SPINDLE_STACK_CLASH_FLAG})
  endif()
  if(SPINDLE_WERROR)
    target_compile_options(${target} PRIVATE -Werror)
  endif()
  if(SPINDLE_LIBFUZZER)
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer-no-link,address,undefined)
    target_link_options(${target} PUBLIC -fsanitize=address,undefined)
  elseif(SPINDLE_SANITIZER)
    string(REPLACE ";" "," san "${SPINDLE_SANITIZER}")
    target_compile_options(${target} PRIVATE -fsanitize=${san})
    target_link_options(${target} PUBLIC -fsanitize=${san})
    # UBSan's checks of every member access (alignment, null) are most of
    # what makes a test's lambdas and Catch's templates slow to optimise:
    # a test program without them compiles in 17-40% less time
    # (docs/building.md "CI's time"). The library keeps every check; a
    # null access in a program still faults under ASan.
    if(NOT O_LIBRARY AND "undefined" IN_LIST SPINDLE_SANITIZER)
      target_compile_options(${target} PRIVATE -fno-sanitize=alignment,null)
    endif()
  endif()
endfunction()

# spindle_add_module(name SOURCES ... DEPS ...)
# Builds an object library spindle_<name> plus an interface target
# spindle_<name>_headers carrying its include directory and its lower layers.
function(spindle_add_module name)
  cmake_parse_arguments(M "" "" "SOURCES;DEPS;LIBS" ${ARGN})
  add_library(spindle_${name}_headers INTERFACE)
  target_include_directories(spindle_${name}_headers INTERFACE
    $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
    $<INSTALL_INTERFACE:include>)
  target_compile_features(spindle_${name}_headers INTERFACE cxx_std_20)
  foreach(dep ${M_DEPS})
    target_link_libraries(spindle_${name}_headers INTERFACE spindle_${dep}_headers)
  endforeach()
  target_link_libraries(spindle_${name}_headers INTERFACE ${M_LIBS})
  add_library(spindle_${name} OBJECT ${M_SOURCES})
  target_link_libraries(spindle_${name} PUBLIC spindle_${name}_headers)
  target_include_directories(spindle_${name} PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
  # Position-independent, so libspindle.a can also be linked into a shared
  # object (a plugin; docs/building.md "Static TLS and dlopen"). -fPIC alone
  # assumes another library may replace any global function at load time
  # (semantic interposition), so GCC inlines no call to one, even within its
  # own file (Worker::land would be called out of line on every switch).
  # Nobody replaces a static library's functions; with
  # -fno-semantic-interposition the code is -fPIE's but for a GOT load here
  # and there (measured in docs/building.md).
  set_target_properties(spindle_${name} PROPERTIES POSITION_INDEPENDENT_CODE ON)
  if(CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    target_compile_options(spindle_${name} PRIVATE -fno-semantic-interposition)
  endif()
  # With LTO, GCC's objects would hold only its intermediate code
  # (-fno-fat-lto-objects), which a program linked with -fno-lto cannot
  # use. Fat objects carry machine code as well, so an installed
  # libspindle.a links either way.
  if(SPINDLE_LTO_ACTIVE AND CMAKE_CXX_COMPILER_ID STREQUAL "GNU")
    target_compile_options(spindle_${name} PRIVATE
      $<$<CONFIG:Release,MinSizeRel>:-ffat-lto-objects>)
  endif()
  spindle_set_target_options(spindle_${name} LIBRARY)
endfunction()

# spindle_add_test(name SOURCES ... [TIMEOUT s] [LABELS ...] [NO_CTEST] [NO_PCH])
# Every test gets a timeout (deadlock is how schedulers fail), scaled by
# SPINDLE_TEST_TIMEOUT_MULTIPLIER for sanitizer builds. NO_CTEST builds the
# program only (death tests register it themselves, once per scenario).
# A Catch test (LIBS spindle_test_main) reuses the tests' precompiled header
# (tests/CMakeLists.txt) unless NO_PCH: give it to a test compiled with
# options of its own.
set(SPINDLE_TEST_TIMEOUT_MULTIPLIER 1 CACHE STRING "Scale for test timeouts")
function(spindle_add_test name)
  cmake_parse_arguments(T "NO_CTEST;NO_PCH" "TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  math(EXPR t "${T_TIMEOUT} * ${SPINDLE_TEST_TIMEOUT_MULTIPLIER}")
  add_executable(${name} ${T_SOURCES})
  target_link_libraries(${name} PRIVATE spindle::spindle ${T_LIBS})
  spindle_set_target_options(${name})
  if(TARGET spindle_test_pch AND NOT T_NO_PCH AND "spindle_test_main" IN_LIST T_LIBS)
    target_precompile_headers(${name} REUSE_FROM spindle_test_pch)
    # gcc 12 reports -Warray-bounds, -Wstringop-overflow and
    # -Wstringop-overread false positives inside the standard library's
    # std::string (operator+, inlined into a test) when its headers come
    # from a precompiled header: seven in the dev build, none without one,
    # where they are a system header's and not shown. (clang knows the
    # first only.)
    target_compile_options(${name} PRIVATE
      $<$<CXX_COMPILER_ID:GNU>:-Wno-array-bounds -Wno-stringop-overflow -Wno-stringop-overread>)
  endif()
  if(NOT T_NO_CTEST)
    add_test(NAME ${name} COMMAND ${name})
    set_tests_properties(${name} PROPERTIES TIMEOUT ${t} LABELS "${T_LABELS}")
  endif()
endfunction()
