// spindle.hpp: the umbrella header. Lives in the top layer (io), the only
// module allowed to include all the others.
#pragma once

#include <spindle/runtime/all.hpp>
#include <spindle/sync/all.hpp>
#include <spindle/io/all.hpp>
