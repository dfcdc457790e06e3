# issue3.cmake: tests of structured concurrency (TaskGroup), the combinators
# (gather.hpp) and cancellation scopes. Included from
# tests/runtime/CMakeLists.txt, so its sanitizer defines
# (spindle_runtime_test_defs) apply here too.
foreach(t combinators task_group cancel)
  # cancel_test.cpp is also picked up by that file's own foreach (as
  # runtime_cancel); do not build it twice.
  if(TARGET runtime_${t})
    continue()
  endif()
  spindle_add_test(runtime_${t}
    SOURCES ${CMAKE_CURRENT_LIST_DIR}/${t}_test.cpp
    LIBS spindle_test_main
    TIMEOUT 120
    LABELS runtime issue3)
  if(spindle_runtime_test_defs)
    target_compile_definitions(runtime_${t} PRIVATE ${spindle_runtime_test_defs})
  endif()
endforeach()
