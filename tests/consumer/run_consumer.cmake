# run_consumer.cmake: one step of the consumer tests, run by CTest as
#   cmake -DSTEP=<step> -D... -P run_consumer.cmake
#
# STEP=install        cmake --install BUILD_DIR --prefix PREFIX (fresh prefix)
# STEP=find_package   configure, build and run project/ against PREFIX
# STEP=pkg_config     compile project/main.cpp with `pkg-config --cflags --libs
#                     spindle` from PREFIX, then run it
# STEP=readme        README.md's example is project/main.cpp
# STEP=add_subdirectory  configure, build and run project/ with spindle's
#                     sources added through add_subdirectory(SPINDLE_SOURCE_DIR)
#
# Inputs: STEP, WORK (scratch dir for this step), PREFIX, BUILD_DIR, CONFIG,
# PROJECT_DIR, SPINDLE_SOURCE_DIR, GENERATOR, CXX, LIBDIR, BUILD_TYPE, JOBS.
cmake_minimum_required(VERSION 3.21)

function(run)
  string(REPLACE ";" " " shown "${ARGN}")
  message(STATUS "$ ${shown}")
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${shown}")
  endif()
endfunction()

# Runs the consumer binary and checks the line it prints.
function(check_consumer exe)
  message(STATUS "$ ${exe}")
  execute_process(COMMAND ${exe} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                  ERROR_VARIABLE err)
  message(STATUS "stdout: ${out}")
  if(err)
    message(STATUS "stderr: ${err}")
  endif()
  if(NOT rc EQUAL 0 OR NOT out MATCHES "spindle consumer: 42")
    message(FATAL_ERROR "consumer failed (exit ${rc}); expected 'spindle consumer: 42'")
  endif()
endfunction()

function(configure_build_run)
  set(bin ${WORK}/build)
  file(REMOVE_RECURSE ${bin})
  run(${CMAKE_COMMAND} -S ${PROJECT_DIR} -B ${bin} -G ${GENERATOR}
      -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=${BUILD_TYPE} ${ARGN})
  run(${CMAKE_COMMAND} --build ${bin} --parallel ${JOBS})
  check_consumer(${bin}/consumer)
endfunction()

if(STEP STREQUAL "install")
  file(REMOVE_RECURSE ${PREFIX})
  set(cfg)
  if(CONFIG)
    set(cfg --config ${CONFIG})
  endif()
  run(${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${PREFIX} ${cfg})
  foreach(f include/spindle/spindle.hpp include/spindle/runtime/runtime.hpp
            ${LIBDIR}/libspindle.a ${LIBDIR}/cmake/spindle/spindleConfig.cmake
            ${LIBDIR}/cmake/spindle/spindleConfigVersion.cmake
            ${LIBDIR}/cmake/spindle/spindleTargets.cmake
            ${LIBDIR}/pkgconfig/spindle.pc)
    if(NOT EXISTS ${PREFIX}/${f})
      message(FATAL_ERROR "not installed: ${PREFIX}/${f}")
    endif()
  endforeach()
elseif(STEP STREQUAL "find_package")
  # Only the install prefix: nothing may leak in from the build tree.
  configure_build_run(-DCMAKE_PREFIX_PATH=${PREFIX} -DCMAKE_FIND_PACKAGE_NO_PACKAGE_REGISTRY=ON)
elseif(STEP STREQUAL "pkg_config")
  find_program(PKG_CONFIG NAMES pkg-config pkgconf REQUIRED)
  set(ENV{PKG_CONFIG_PATH} "${PREFIX}/${LIBDIR}/pkgconfig")
  execute_process(COMMAND ${PKG_CONFIG} --cflags --libs spindle
                  RESULT_VARIABLE rc OUTPUT_VARIABLE flags
                  OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "pkg-config --cflags --libs spindle failed (${rc})")
  endif()
  message(STATUS "pkg-config --cflags --libs spindle: ${flags}")
  separate_arguments(flags UNIX_COMMAND "${flags}")
  file(REMOVE_RECURSE ${WORK})
  file(MAKE_DIRECTORY ${WORK})
  # The way a Makefile user writes it: sources before libraries.
  run(${CXX} -std=c++20 -O1 ${PROJECT_DIR}/main.cpp ${flags} -o ${WORK}/consumer)
  check_consumer(${WORK}/consumer)
elseif(STEP STREQUAL "readme")
  # README.md's "A first program" must be project/main.cpp below its header
  # comment, so the README shows code these tests build and run.
  file(READ ${SPINDLE_SOURCE_DIR}/README.md readme)
  file(READ ${PROJECT_DIR}/main.cpp main)
  string(FIND "${readme}" "## A first program" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "README.md has no '## A first program' section")
  endif()
  string(SUBSTRING "${readme}" ${at} -1 readme)
  string(FIND "${readme}" "```cpp\n" begin)
  math(EXPR begin "${begin} + 7")
  string(SUBSTRING "${readme}" ${begin} -1 readme)
  string(FIND "${readme}" "```" end)
  string(SUBSTRING "${readme}" 0 ${end} example)
  string(FIND "${main}" "#include" body)
  string(SUBSTRING "${main}" ${body} -1 main)
  if(NOT example STREQUAL main)
    message(FATAL_ERROR "README.md's example differs from ${PROJECT_DIR}/main.cpp:\n"
      "--- README\n${example}--- main.cpp\n${main}")
  endif()
  message(STATUS "README.md example matches ${PROJECT_DIR}/main.cpp")
elseif(STEP STREQUAL "add_subdirectory")
  # A Debug build at -O0 with no debug information: what this step checks
  # is that the sources build and link inside another project, and
  # compiling the library a second time was the longest test of the dev
  # preset (177 s at -O2 -g1 on the 2-core VM; docs/building.md "CI's
  # time"). Also the configuration an embedding project's debug build uses.
  set(BUILD_TYPE Debug)
  configure_build_run(-DSPINDLE_SOURCE_DIR=${SPINDLE_SOURCE_DIR} -DCMAKE_CXX_FLAGS_DEBUG=-O0 -DCMAKE_C_FLAGS_DEBUG=-O0)
else()
  message(FATAL_ERROR "unknown STEP '${STEP}'")
endif()
