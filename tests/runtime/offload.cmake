# offload.cmake: the offload/blocking pool test (runtime/include/spindle/
# runtime/offload.hpp). Included from tests/runtime/CMakeLists.txt, so the
# sanitizer defines of that file (spindle_runtime_test_defs) apply here too.
spindle_add_test(offload_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/offload_test.cpp
  LIBS spindle_test_main
  TIMEOUT 120
  LABELS runtime offload)
if(spindle_runtime_test_defs)
  target_compile_definitions(offload_test PRIVATE ${spindle_runtime_test_defs})
endif()

# The pool options are read by the first offload() of a process: a program
# of its own.
spindle_add_test(offload_options_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/offload_options_test.cpp
  LIBS spindle_test_main
  TIMEOUT 60
  LABELS runtime offload)
if(spindle_runtime_test_defs)
  target_compile_definitions(offload_options_test PRIVATE ${spindle_runtime_test_defs})
endif()
