// The headers most test programs parse, compiled once per build into a
// precompiled header that every Catch test reuses (tests/CMakeLists.txt,
// spindle_test_pch): parsing them took 3-5 s of each test's 8-17 s compile
// (docs/building.md "CI's time"). Only headers whose meaning no test
// changes: no test support header (their macros differ per target), and
// no header a test defines a macro for first. A test still includes what
// it uses; this only makes the second inclusion free.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include <spindle/spindle.hpp>
// Public and free of Beast; it needs nlohmann-json's json_fwd.hpp, which a
// build without the http sources may lack (its tests do not use it).
#if __has_include(<nlohmann/json_fwd.hpp>)
#include <spindle/io/http/all.hpp>
#endif
