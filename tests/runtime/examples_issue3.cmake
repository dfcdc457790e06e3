# examples_issue3.cmake: runs the asyncio seed examples of issue #3; each
# checks its own output and prints a final "ok" line. Include from
# tests/runtime/CMakeLists.txt (needs SPINDLE_BUILD_EXAMPLES).
if(SPINDLE_BUILD_EXAMPLES)
  foreach(ex seed_gather seed_create_task seed_timeout seed_gather_settled seed_as_completed)
    if(TARGET example_${ex})
      add_test(NAME example_${ex} COMMAND example_${ex})
      set_tests_properties(example_${ex} PROPERTIES
        PASS_REGULAR_EXPRESSION "(^|\n)ok\n"
        TIMEOUT 60
        LABELS examples)
    endif()
  endforeach()
endif()
