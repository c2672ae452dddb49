# Installing convgen, and find_package(convgen) from an install prefix or from the build tree.
#
#   convgen::convgen_runtime     what an app links (registry, kernels' calling convention, tensor
#                                I/O, weights); no LLVM, no libHalide
#   convgen::convgen_generator   the AOT generator convgen_add_kernels runs at build time
#   convgen::convgen             the command-line tool
#   convgen_add_kernels(...)     cmake/ConvgenKernels.cmake
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(CONVGEN_CMAKE_INSTALL_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/convgen)
set(_exported convgen_runtime_core convgen_spec convgen_runtime)
if(TARGET convgen_generator)
  list(APPEND _exported convgen_generator convgen)
endif()

install(TARGETS ${_exported} EXPORT convgenTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(FILES dsl/layer_spec.h dsl/weight_layout.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/convgen/dsl)
install(FILES runtime/cpu.h runtime/errors.h runtime/kernel.h runtime/kernel_allocator.h runtime/memory_budget.h runtime/npy.h runtime/reference.h
              runtime/registry.h runtime/safetensors.h runtime/tensor.h runtime/weights.h
        DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/convgen/runtime)
install(FILES ${CONVGEN_BUILD_INCLUDE_DIR}/HalideRuntime.h DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/convgen)
install(EXPORT convgenTargets NAMESPACE convgen:: DESTINATION ${CONVGEN_CMAKE_INSTALL_DIR})

configure_package_config_file(${CMAKE_SOURCE_DIR}/cmake/convgenConfig.cmake.in
                              ${CMAKE_BINARY_DIR}/convgenConfig.cmake
                              INSTALL_DESTINATION ${CONVGEN_CMAKE_INSTALL_DIR})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/convgenConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/convgenConfig.cmake ${CMAKE_BINARY_DIR}/convgenConfigVersion.cmake
              ${CMAKE_SOURCE_DIR}/cmake/ConvgenKernels.cmake
        DESTINATION ${CONVGEN_CMAKE_INSTALL_DIR})

# The build tree is a package too (convgen_DIR=<build>): same targets, same helper.
export(EXPORT convgenTargets NAMESPACE convgen:: FILE ${CMAKE_BINARY_DIR}/convgenTargets.cmake)
configure_file(${CMAKE_SOURCE_DIR}/cmake/ConvgenKernels.cmake ${CMAKE_BINARY_DIR}/ConvgenKernels.cmake COPYONLY)
