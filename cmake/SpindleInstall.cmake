# Install rules and package files (included from the root when SPINDLE_INSTALL
# is on, which by default it is only when spindle is the top-level project).
#
# `cmake --install <build> --prefix <p>` lays out:
#   <p>/include/spindle/...                  public headers of every module
#   <p>/<libdir>/libspindle.a
#   <p>/<libdir>/cmake/spindle/              spindleConfig.cmake, version, targets
#   <p>/<libdir>/pkgconfig/spindle.pc
# Both package files are relocatable: they find the prefix from their own
# location, so an install tree can be moved or installed with --prefix.
# tests/consumer checks all three ways of consuming the library.

include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(SPINDLE_INSTALL_CMAKEDIR "${CMAKE_INSTALL_LIBDIR}/cmake/spindle"
  CACHE STRING "Where spindleConfig.cmake is installed (relative to the prefix)")
mark_as_advanced(SPINDLE_INSTALL_CMAKEDIR)

# --- Link dependencies for consumers of the installed library -------------
# spindle is static, so whoever links it also links what its objects use.
# runtime/CMakeLists.txt gives spindle_runtime_headers Boost.Context and libuv
# for the build tree only; the installed targets name the same imported
# targets, which spindleConfig.cmake recreates with find_dependency and
# pkg_check_modules. (Threads::Threads is already unconditional.)
target_link_libraries(spindle_runtime_headers INTERFACE
  $<INSTALL_INTERFACE:Boost::context>
  $<INSTALL_INTERFACE:PkgConfig::LIBUV>)
if(SPINDLE_HAVE_TLS)
  # io/src/tls.cpp: OpenSSL (spindleConfig.cmake finds it again).
  target_link_libraries(spindle_io_headers INTERFACE $<INSTALL_INTERFACE:OpenSSL::SSL>)
endif()
if(SPINDLE_HAVE_HTTP2)
  # io/src/http/h2_server.cpp: libnghttp2 (spindleConfig.cmake finds it
  # again through pkg-config).
  target_link_libraries(spindle_io_headers INTERFACE $<INSTALL_INTERFACE:PkgConfig::NGHTTP2>)
endif()

# --- Library, headers, exported targets ------------------------------------
# The *_headers interface targets carry the include directory, the C++20
# requirement and the link dependencies, so they are exported with spindle.
set(_spindle_header_targets)
foreach(_m runtime sync io)
  if(TARGET spindle_${_m}_headers)
    list(APPEND _spindle_header_targets spindle_${_m}_headers)
  endif()
endforeach()

install(TARGETS spindle ${_spindle_header_targets}
  EXPORT spindleTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT spindle_development
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT spindle_development)

# Public headers: each module's include/ tree merges into <prefix>/include
# (<spindle/runtime/...>, <spindle/sync/...>, <spindle/io/...> and the
# umbrella <spindle/spindle.hpp>). OPTIONAL: a module may not have public
# headers yet.
foreach(_m runtime sync io)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${_m}/include/
    DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    COMPONENT spindle_development
    OPTIONAL
    FILES_MATCHING PATTERN "*.hpp" PATTERN "*.h")
endforeach()

install(EXPORT spindleTargets
  NAMESPACE spindle::
  DESTINATION ${SPINDLE_INSTALL_CMAKEDIR}
  FILE spindleTargets.cmake
  COMPONENT spindle_development)

# --- CMake package: find_package(spindle CONFIG) ---------------------------
set(SPINDLE_CONFIG_HAVE_TLS ${SPINDLE_HAVE_TLS})
set(SPINDLE_CONFIG_HAVE_HTTP2 ${SPINDLE_HAVE_HTTP2})
configure_package_config_file(
  ${CMAKE_CURRENT_LIST_DIR}/spindleConfig.cmake.in
  ${PROJECT_BINARY_DIR}/spindleConfig.cmake
  INSTALL_DESTINATION ${SPINDLE_INSTALL_CMAKEDIR})
# Before 1.0 a minor release may break the API, so 0.1 does not satisfy 0.2.
write_basic_package_version_file(
  ${PROJECT_BINARY_DIR}/spindleConfigVersion.cmake
  VERSION ${PROJECT_VERSION}
  COMPATIBILITY SameMinorVersion)
install(FILES
  ${PROJECT_BINARY_DIR}/spindleConfig.cmake
  ${PROJECT_BINARY_DIR}/spindleConfigVersion.cmake
  DESTINATION ${SPINDLE_INSTALL_CMAKEDIR}
  COMPONENT spindle_development)

# --- pkg-config: spindle.pc -------------------------------------------------
# The prefix is derived from ${pcfiledir}, so `cmake --install --prefix` to a
# different place than CMAKE_INSTALL_PREFIX still yields a working file.
set(_spindle_pcdir "${CMAKE_INSTALL_LIBDIR}/pkgconfig")
if(IS_ABSOLUTE "${_spindle_pcdir}")
  set(SPINDLE_PC_PREFIX "${CMAKE_INSTALL_PREFIX}")
else()
  file(RELATIVE_PATH _rel "/base/${_spindle_pcdir}" "/base")
  string(REGEX REPLACE "/$" "" _rel "${_rel}")
  set(SPINDLE_PC_PREFIX "\${pcfiledir}/${_rel}")
endif()
foreach(_d LIBDIR INCLUDEDIR)
  if(IS_ABSOLUTE "${CMAKE_INSTALL_${_d}}")
    set(SPINDLE_PC_${_d} "${CMAKE_INSTALL_${_d}}")
  else()
    set(SPINDLE_PC_${_d} "\${prefix}/${CMAKE_INSTALL_${_d}}")
  endif()
endforeach()

# Boost.Context has no .pc file: name it directly, with -L only when it is not
# in a directory the linker searches anyway.
set(SPINDLE_PC_EXTRA_LIBS "")
foreach(_prop IMPORTED_LOCATION_RELEASE IMPORTED_LOCATION_RELWITHDEBINFO
              IMPORTED_LOCATION_NOCONFIG IMPORTED_LOCATION)
  get_target_property(_loc Boost::context ${_prop})
  if(_loc)
    get_filename_component(_dir "${_loc}" DIRECTORY)
    if(NOT _dir IN_LIST CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
      string(APPEND SPINDLE_PC_EXTRA_LIBS " -L${_dir}")
    endif()
    break()
  endif()
endforeach()
string(APPEND SPINDLE_PC_EXTRA_LIBS " -lboost_context -pthread")
if(SPINDLE_HAVE_HTTP2)
  string(APPEND SPINDLE_PC_EXTRA_LIBS " -lnghttp2")
endif()
if(SPINDLE_HAVE_TLS)
  string(APPEND SPINDLE_PC_EXTRA_LIBS " -lssl -lcrypto")
endif()
# A sanitizer build's library needs the sanitizer runtime at link time.
if(SPINDLE_SANITIZER)
  string(REPLACE ";" "," _san "${SPINDLE_SANITIZER}")
  string(APPEND SPINDLE_PC_EXTRA_LIBS " -fsanitize=${_san}")
endif()

configure_file(${CMAKE_CURRENT_LIST_DIR}/spindle.pc.in
  ${PROJECT_BINARY_DIR}/spindle.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/spindle.pc
  DESTINATION ${_spindle_pcdir}
  COMPONENT spindle_development)

unset(_spindle_header_targets)
unset(_spindle_pcdir)
