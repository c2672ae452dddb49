# One bounded fuzz run (the CTest tests fuzz.<target>): copies the committed corpus to WORK (so the
# run never grows the committed one), fuzzes for SECONDS and fails unless the fuzzer exits 0.
#   cmake -DFUZZER=<exe> -DCORPUS=<dir> -DDICT=<file> -DWORK=<dir> -DSECONDS=<n> -P run_fuzz.cmake
foreach(v FUZZER CORPUS DICT WORK SECONDS)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "run_fuzz.cmake: ${v} is not set")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK})
file(MAKE_DIRECTORY ${WORK}/corpus ${WORK}/artifacts)
file(GLOB seeds ${CORPUS}/*)
file(COPY ${seeds} DESTINATION ${WORK}/corpus)
set(dict_arg)
if(EXISTS ${DICT})
  set(dict_arg -dict=${DICT})
endif()
execute_process(COMMAND ${FUZZER} -max_total_time=${SECONDS} -rss_limit_mb=2048 -timeout=10 -print_final_stats=1
                        -artifact_prefix=${WORK}/artifacts/ ${dict_arg} ${WORK}/corpus
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  file(GLOB found ${WORK}/artifacts/*)
  message(FATAL_ERROR "${FUZZER} exited with ${rc}; the input that failed: ${found} "
                      "(add it to ${CORPUS} as a regression input once fixed)")
endif()
