# Lists the headers that tests/local_headers.cpp reaches (the compiler's -M)
# and fails if cereal or vm.hpp is among them.
execute_process(COMMAND ${CXX} -std=c++20 -I${INCLUDE} -M ${SOURCE}
  OUTPUT_VARIABLE deps ERROR_VARIABLE errors RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the local headers do not compile on their own:\n${errors}")
endif()
string(REGEX MATCHALL "[^ \\\n]*(cereal|cos/vm\\.hpp|cos/remote\\.hpp)[^ \\\n]*" reached "${deps}")
if(reached)
  list(JOIN reached "\n  " shown)
  message(FATAL_ERROR "the local headers reach the remote layer:\n  ${shown}")
endif()
message(STATUS "the local headers reach no cereal header, no vm.hpp and no remote.hpp")
