# convgen_add_kernels(<target> LAYERS <suite file> [TARGETS <halide target>...] [SCHEDULES <db.json>])
#
# Generates, at build time, one AOT kernel per layer of the suite file (the text format of
# bench/layers.txt) and per Halide target, and builds them into the static library <target>
# together with ONE Halide runtime (one thread pool for all of them) and a registration source
# that makes them known to convgen's runtime (runtime/registry.h: load_kernel picks the variant
# the host CPU runs best; CONVGEN_MAX_ISA caps it). Link the library and convgen's runtime:
#
#   find_package(convgen REQUIRED)
#   convgen_add_kernels(my_kernels LAYERS layers.txt)
#   target_link_libraries(my_app PRIVATE my_kernels)   # brings convgen::convgen_runtime
#
# TARGETS defaults to the x86-64 variants (AVX-512, AVX2, SSE4.1) on x86-64 and to arm-64-linux
# when CMAKE_SYSTEM_PROCESSOR is aarch64 (cross builds). Every target must match the architecture
# being built for. SCHEDULES bakes tuned schedules from a schedule database into the kernels.
# The generator is the build tree's convgen_generator, the installed convgen::convgen_generator,
# or CONVGEN_GENERATOR (a host executable, for cross builds).

set(CONVGEN_DEFAULT_X86_TARGETS
    x86-64-linux-avx-avx2-f16c-fma-sse41-avx512-avx512_skylake
    x86-64-linux-avx-avx2-f16c-fma-sse41
    x86-64-linux-sse41)

function(convgen_add_kernels target)
  cmake_parse_arguments(PARSE_ARGV 1 ARG "" "LAYERS;SCHEDULES" "TARGETS")
  if(ARG_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "convgen_add_kernels(${target}): unknown arguments: ${ARG_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT ARG_LAYERS)
    message(FATAL_ERROR "convgen_add_kernels(${target}): LAYERS <suite file> is required")
  endif()
  get_filename_component(layers "${ARG_LAYERS}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
  if(NOT EXISTS "${layers}")
    message(FATAL_ERROR "convgen_add_kernels(${target}): LAYERS file '${layers}' does not exist")
  endif()
  set(schedule_db "")
  if(ARG_SCHEDULES)
    get_filename_component(schedule_db "${ARG_SCHEDULES}" ABSOLUTE BASE_DIR "${CMAKE_CURRENT_SOURCE_DIR}")
    if(NOT EXISTS "${schedule_db}")
      message(FATAL_ERROR "convgen_add_kernels(${target}): SCHEDULES file '${schedule_db}' does not exist")
    endif()
  endif()

  # The generator runs on the build machine.
  if(CONVGEN_GENERATOR)
    set(gen "${CONVGEN_GENERATOR}")
    set(gen_dep "${CONVGEN_GENERATOR}")
  elseif(TARGET convgen_generator)
    set(gen $<TARGET_FILE:convgen_generator>)
    set(gen_dep convgen_generator)
  elseif(TARGET convgen::convgen_generator)
    set(gen $<TARGET_FILE:convgen::convgen_generator>)
    set(gen_dep convgen::convgen_generator)
  else()
    message(FATAL_ERROR "convgen_add_kernels(${target}): no convgen_generator (find_package(convgen) or set CONVGEN_GENERATOR)")
  endif()
  if(TARGET convgen_runtime)
    set(runtime_lib convgen_runtime)
  else()
    set(runtime_lib convgen::convgen_runtime)
  endif()

  if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
    set(arch_prefix arm-64-)
  elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
    set(arch_prefix x86-64-)
  else()
    message(FATAL_ERROR "convgen_add_kernels(${target}): unsupported processor '${CMAKE_SYSTEM_PROCESSOR}'")
  endif()
  set(targets ${ARG_TARGETS})
  if(NOT targets)
    if(arch_prefix STREQUAL "arm-64-")
      set(targets arm-64-linux)
    else()
      set(targets ${CONVGEN_DEFAULT_X86_TARGETS})
    endif()
  endif()
  foreach(t IN LISTS targets)
    string(FIND "${t}" "${arch_prefix}" pos)
    if(NOT pos EQUAL 0)
      message(FATAL_ERROR "convgen_add_kernels(${target}): target '${t}' is not for ${CMAKE_SYSTEM_PROCESSOR} "
                          "(kernels for another architecture need a cross build; see README, ARM64)")
    endif()
  endforeach()

  string(MAKE_C_IDENTIFIER "${target}" lib)
  set(dir ${CMAKE_CURRENT_BINARY_DIR}/${target}.convgen)
  file(MAKE_DIRECTORY ${dir})
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${layers}")

  file(STRINGS "${layers}" lines)
  set(objects "")
  set(manifest "")
  set(layer_index 0)
  set(line_no 0)
  foreach(line IN LISTS lines)
    math(EXPR line_no "${line_no} + 1")
    string(REGEX REPLACE "#.*$" "" line "${line}")
    string(STRIP "${line}" line)
    if(line STREQUAL "")
      continue()
    endif()
    string(REGEX MATCH "^[^ \t]+" kind "${line}")
    if(kind STREQUAL "conv")
      set(generator convgen_conv)
    elseif(kind STREQUAL "dwconv")
      set(generator convgen_dwconv)
    else()
      message(FATAL_ERROR "${layers}:${line_no}: unknown layer kind '${kind}' (conv or dwconv)")
    endif()
    string(REGEX REPLACE "[ \t]+" " " line "${line}")
    set(variant 0)
    foreach(t IN LISTS targets)
      set(fn ${lib}_l${layer_index}_v${variant})
      # GenGen splits generator arguments at '=': the spec goes with ':' instead (see generator.cc).
      string(REPLACE "=" ":" spec_param "${line}")
      set(gen_args -g ${generator} -f ${fn} -o ${dir} -e object target=${t}-no_runtime "spec=${spec_param}")
      set(extra_deps "")
      if(schedule_db)
        list(APPEND gen_args "schedule_db=${schedule_db}")
        list(APPEND extra_deps "${schedule_db}")
      endif()
      add_custom_command(OUTPUT ${dir}/${fn}.o
                         COMMAND ${gen} ${gen_args}
                         DEPENDS ${gen_dep} "${layers}" ${extra_deps}
                         COMMENT "convgen: generating ${kind} layer ${layer_index} for ${t}"
                         VERBATIM)
      list(APPEND objects ${dir}/${fn}.o)
      string(APPEND manifest "${fn}\t${t}\t${line}\t${schedule_db}\n")
      math(EXPR variant "${variant} + 1")
    endforeach()
    math(EXPR layer_index "${layer_index} + 1")
  endforeach()
  if(layer_index EQUAL 0)
    message(FATAL_ERROR "convgen_add_kernels(${target}): '${layers}' lists no layers")
  endif()

  # One runtime for every kernel of the library, for the plain architecture (its code does not
  # depend on the kernels' CPU features).
  list(GET targets 0 first_target)
  string(REGEX MATCH "^[a-z0-9]+-[0-9]+-[a-z]+" runtime_target "${first_target}")
  add_custom_command(OUTPUT ${dir}/${lib}_runtime.o
                     COMMAND ${gen} -r ${lib}_runtime -o ${dir} -e object target=${runtime_target}
                     DEPENDS ${gen_dep}
                     COMMENT "convgen: generating the Halide runtime for ${runtime_target}"
                     VERBATIM)
  list(APPEND objects ${dir}/${lib}_runtime.o)

  # Rewritten only when it changes, so an unchanged suite does not regenerate the registry.
  file(CONFIGURE OUTPUT ${dir}/manifest.tsv CONTENT "${manifest}" @ONLY)
  add_custom_command(OUTPUT ${dir}/${lib}_registry.cc
                     COMMAND ${gen} --registry ${dir}/manifest.tsv ${dir}/${lib}_registry.cc ${lib}
                     DEPENDS ${gen_dep} ${dir}/manifest.tsv ${schedule_db}
                     COMMENT "convgen: writing the registry of ${target}"
                     VERBATIM)

  set_source_files_properties(${objects} PROPERTIES EXTERNAL_OBJECT TRUE GENERATED TRUE)
  add_library(${target} STATIC ${dir}/${lib}_registry.cc ${objects})
  target_link_libraries(${target} PUBLIC ${runtime_lib} Threads::Threads ${CMAKE_DL_LIBS})
  target_link_options(${target} INTERFACE "LINKER:--undefined=convgen_kernels_${lib}_anchor")
  set_target_properties(${target} PROPERTIES LINKER_LANGUAGE CXX)
endfunction()
