// io.cpp: placeholder translation unit until the io module lands.
namespace spindle::detail {
int io_module_anchor = 0;
}
