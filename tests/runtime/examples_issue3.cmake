# examples_issue3.cmake: runs the runtime's examples (the asyncio seed
# examples of issue #3 and offload_ticker); each checks its own output.
# Include from tests/runtime/CMakeLists.txt (needs SPINDLE_BUILD_EXAMPLES).
#
# PASS_REGULAR_EXPRESSION alone would let a sanitizer report printed after
# the expected output pass (CTest then ignores the exit status), so every
# entry also fails on the sanitizers' report headers.
set(spindle_example_fail_regex
  "ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer|runtime error:|spindle: deadlock")
if(SPINDLE_BUILD_EXAMPLES)
  math(EXPR spindle_example_timeout "60 * ${SPINDLE_TEST_TIMEOUT_MULTIPLIER}")
  foreach(ex seed_gather seed_create_task seed_timeout seed_gather_settled seed_as_completed)
    if(TARGET example_${ex})
      add_test(NAME example_${ex} COMMAND example_${ex})
      set_tests_properties(example_${ex} PROPERTIES
        PASS_REGULAR_EXPRESSION "(^|\n)ok\n"
        FAIL_REGULAR_EXPRESSION "${spindle_example_fail_regex}"
        TIMEOUT ${spindle_example_timeout}
        LABELS examples)
    endif()
  endforeach()
  # offload_ticker: both prime counts right (its timing is printed, never
  # asserted). The offload pool runs at nice 19, so on a loaded machine the
  # offloaded step takes tens of seconds: a longer timeout.
  if(TARGET example_offload_ticker)
    add_test(NAME example_offload_ticker COMMAND example_offload_ticker)
    math(EXPR t "180 * ${SPINDLE_TEST_TIMEOUT_MULTIPLIER}")
    set_tests_properties(example_offload_ticker PROPERTIES
      PASS_REGULAR_EXPRESSION "inline   : primes below 2000000 = 148933 \\(expected 148933\\): ok\n.*offloaded: primes below 2000000 = 148933 \\(expected 148933\\): ok\n"
      FAIL_REGULAR_EXPRESSION "${spindle_example_fail_regex}|WRONG"
      TIMEOUT ${t}
      LABELS "examples;offload")
  endif()
endif()
