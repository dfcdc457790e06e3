# check_misuse.cmake: the compile-failure test of one misuse program
# (tests/guide/misuse/*.cpp, issue #15). Run with cmake -P and
#   -DCXX=<compiler> -DINCLUDES=<dir|dir|...> -DSOURCE=<file.cpp>
# The file's first line is `// expect: <text>`. The test passes when
#  1. the file compiles with -DSPINDLE_MISUSE_FIXED (the correct spelling:
#     proves the misuse is the only error), and
#  2. without it the compiler fails and <text> is among the first 5 lines
#     of its diagnostics. The include chain ("In file included from" and
#     its "from" lines) is not counted: its length depends only on which
#     header the user included, not on the error.
cmake_minimum_required(VERSION 3.21)

file(STRINGS "${SOURCE}" expect_line LIMIT_COUNT 1 REGEX "^// expect: ")
if(NOT expect_line)
  message(FATAL_ERROR "${SOURCE}: no `// expect:` line")
endif()
string(REGEX REPLACE "^// expect: " "" expect "${expect_line}")
# The diagnostics are neutralised below (list separator, brackets); the
# expected text the same way, so it may quote code such as [&]{ ...; }
# (file(STRINGS) gives a ';' of the line as "\;").
string(REPLACE "\\;" "," expect "${expect}")
string(REPLACE ";" "," expect "${expect}")
string(REPLACE "[" "(" expect "${expect}")
string(REPLACE "]" ")" expect "${expect}")

string(REPLACE "|" ";" include_dirs "${INCLUDES}")
set(flags -std=c++20 -fsyntax-only -fno-diagnostics-color)
foreach(dir IN LISTS include_dirs)
  list(APPEND flags "-I${dir}")
endforeach()

execute_process(COMMAND "${CXX}" ${flags} -DSPINDLE_MISUSE_FIXED "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the corrected spelling of ${SOURCE} does not compile:\n${out}")
endif()

execute_process(COMMAND "${CXX}" ${flags} "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it is a misuse that must not")
endif()

# Lines as a CMake list: neutralise the list separator and brackets first.
string(REPLACE ";" "," text "${out}")
string(REPLACE "[" "(" text "${text}")
string(REPLACE "]" ")" text "${text}")
string(REPLACE "\n" ";" lines "${text}")
set(head "")
set(counted 0)
foreach(line IN LISTS lines)
  if(line MATCHES "^In file included from " OR line MATCHES "^ +from ")
    continue()
  endif()
  string(APPEND head "${line}\n")
  math(EXPR counted "${counted} + 1")
  if(counted EQUAL 5)
    break()
  endif()
endforeach()

string(FIND "${head}" "${expect}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "the first 5 lines of the error do not say \"${expect}\":\n${head}\n"
                      "(full output:)\n${out}")
endif()
message(STATUS "ok: the error starts with: ${expect}")
