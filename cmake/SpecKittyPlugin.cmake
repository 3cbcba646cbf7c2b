# sk_add_transport(NAME SOURCES... [LIBS ...] [NO_INSTALL] [OUTPUT_DIR dir])
# Builds a transport plugin NAME.so against include/spec-kitty/transport.h only,
# with hidden visibility, into the build tree's transports folder (or
# OUTPUT_DIR), and installs it unless NO_INSTALL.
function(sk_add_transport name)
  cmake_parse_arguments(ARG "NO_INSTALL" "OUTPUT_DIR;TARGET" "SOURCES;LIBS;DEFINES" ${ARGN})
  set(target sk-transport-${name})
  if(ARG_TARGET)
    set(target ${ARG_TARGET})
  endif()
  set(outdir ${SK_PLUGIN_BUILD_DIR})
  if(ARG_OUTPUT_DIR)
    set(outdir ${ARG_OUTPUT_DIR})
  endif()
  add_library(${target} MODULE ${ARG_SOURCES})
  target_include_directories(${target} PRIVATE ${CMAKE_SOURCE_DIR}/include)
  target_link_libraries(${target} PRIVATE ${ARG_LIBS})
  target_compile_definitions(${target} PRIVATE _GNU_SOURCE ${ARG_DEFINES})
  set_target_properties(${target} PROPERTIES
    PREFIX "" OUTPUT_NAME ${name}
    C_VISIBILITY_PRESET hidden
    LIBRARY_OUTPUT_DIRECTORY ${outdir})
  if(NOT SK_SANITIZE)
    target_link_options(${target} PRIVATE -Wl,--no-undefined)
  endif()
  target_link_options(${target} PRIVATE -Wl,-z,now)
  if(NOT ARG_NO_INSTALL)
    install(TARGETS ${target} LIBRARY DESTINATION ${SK_PLUGIN_SUBDIR} PERMISSIONS
      OWNER_READ OWNER_WRITE OWNER_EXECUTE GROUP_READ GROUP_EXECUTE WORLD_READ WORLD_EXECUTE)
  endif()
endfunction()
