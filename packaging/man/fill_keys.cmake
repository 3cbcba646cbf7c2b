# cmake -DTEMPLATE=page.scd.in -DGENERATOR=prog -DOUT=page.scd -P fill_keys.cmake
# Replaces @SK_CONFIG_KEYS@ in the template by what the generator prints.
execute_process(COMMAND ${GENERATOR} OUTPUT_VARIABLE keys RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${GENERATOR} failed (${rc})")
endif()
file(READ ${TEMPLATE} page)
string(REPLACE "@SK_CONFIG_KEYS@" "${keys}" page "${page}")
file(WRITE ${OUT} "${page}")
