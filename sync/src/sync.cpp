// sync.cpp: placeholder translation unit until the sync module lands
// (issue: sync primitives). Keeps the object library non-empty.
namespace spindle::detail {
int sync_module_anchor = 0;
}
