# offload.cmake: the offload/blocking pool tests (runtime/include/spindle/
# runtime/offload.hpp). Included from tests/runtime/CMakeLists.txt, so the
# sanitizer defines of that file (spindle_runtime_test_defs) apply here too.
#   offload_test          the calls, cancellation, the pools' growth and caps
#   offload_pools_test    who owns the pools (each Runtime its own) and what
#                         happens to a queued job whose caller is cancelled
#                         or whose runtime shuts down
#   offload_options_test  offload_threads, blocking_threads and
#                         offload_low_priority as one runtime's pools see them
foreach(t IN ITEMS offload_test offload_pools_test offload_options_test)
  spindle_add_test(${t}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}.cpp
    LIBS spindle_test_main
    TIMEOUT 120
    LABELS runtime offload)
  if(spindle_runtime_test_defs)
    target_compile_definitions(${t} PRIVATE ${spindle_runtime_test_defs})
  endif()
endforeach()
