#include "http_test_support.hpp"
