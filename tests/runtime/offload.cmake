# offload.cmake: the offload/blocking pool tests (runtime/include/spindle/
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

# Who owns the pools (each Runtime its own) and what happens to a queued job
# whose caller is cancelled or whose runtime shuts down.
spindle_add_test(offload_pools_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/offload_pools_test.cpp
  LIBS spindle_test_main
  TIMEOUT 120
  LABELS runtime offload)
if(spindle_runtime_test_defs)
  target_compile_definitions(offload_pools_test PRIVATE ${spindle_runtime_test_defs})
endif()

# The pool options (offload_threads, blocking_threads, offload_low_priority)
# as the pools of one runtime see them.
spindle_add_test(offload_options_test
  SOURCES ${CMAKE_CURRENT_LIST_DIR}/offload_options_test.cpp
  LIBS spindle_test_main
  TIMEOUT 60
  LABELS runtime offload)
if(spindle_runtime_test_defs)
  target_compile_definitions(offload_options_test PRIVATE ${spindle_runtime_test_defs})
endif()
