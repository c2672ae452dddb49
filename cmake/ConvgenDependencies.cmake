# Third-party packages, and the two headers the runtime needs from them.
#
# The runtime includes Halide's C runtime header (HalideRuntime.h, for halide_buffer_t) but links
# nothing of Halide; a copy of the header lives in the build tree (and is installed with convgen)
# so that AOT-only apps need no Halide package at all.

if(NOT CONVGEN_RUNTIME_ONLY)
  find_package(Halide 14 REQUIRED)
  find_package(CLI11 REQUIRED)
  get_target_property(_halide_runtime_includes Halide::Runtime INTERFACE_INCLUDE_DIRECTORIES)
  find_file(CONVGEN_HALIDE_RUNTIME_HEADER HalideRuntime.h PATHS ${_halide_runtime_includes} NO_DEFAULT_PATH)
else()
  set(CONVGEN_HALIDE_RUNTIME_HEADER "" CACHE FILEPATH "HalideRuntime.h of the Halide that built the generator")
endif()
if(NOT CONVGEN_HALIDE_RUNTIME_HEADER OR NOT EXISTS "${CONVGEN_HALIDE_RUNTIME_HEADER}")
  message(FATAL_ERROR "HalideRuntime.h not found (set CONVGEN_HALIDE_RUNTIME_HEADER to its path)")
endif()
set(CONVGEN_BUILD_INCLUDE_DIR ${CMAKE_BINARY_DIR}/include)
configure_file(${CONVGEN_HALIDE_RUNTIME_HEADER} ${CONVGEN_BUILD_INCLUDE_DIR}/HalideRuntime.h COPYONLY)

# nlohmann_json is header-only. Cross builds point CONVGEN_NLOHMANN_INCLUDE_DIR at a directory
# holding just nlohmann/ (the host package's config would put all of /usr/include on the path).
set(CONVGEN_NLOHMANN_INCLUDE_DIR "" CACHE PATH "Directory containing nlohmann/json.hpp (instead of find_package)")
if(CONVGEN_NLOHMANN_INCLUDE_DIR)
  add_library(nlohmann_json::nlohmann_json INTERFACE IMPORTED)
  set_target_properties(nlohmann_json::nlohmann_json PROPERTIES INTERFACE_INCLUDE_DIRECTORIES ${CONVGEN_NLOHMANN_INCLUDE_DIR})
else()
  find_package(nlohmann_json 3 REQUIRED)
endif()
