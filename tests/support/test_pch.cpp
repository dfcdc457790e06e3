// The translation unit that carries tests/support/test_pch.hpp's
// precompiled header (spindle_test_pch in tests/CMakeLists.txt); it has no
// code of its own.
