// pull_iterator.hpp: not for user code; the header is detail/pull_iterator.hpp. This
// forwarding header stays only while generator.hpp includes this path.
#pragma once

#include <spindle/sync/detail/pull_iterator.hpp>
