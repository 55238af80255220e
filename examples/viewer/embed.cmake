# Writes a C source that holds a file's bytes, so a program can serve the
# file without finding it at run time:
#
#   cmake -DIN=index.html -DOUT=page.c -DNAME=kzv_page -P embed.cmake
#
# defines `const unsigned char NAME[]` (the bytes and a terminating NUL)
# and `const size_t NAME_len` (the byte count without the NUL). Plain CMake,
# so the build needs no xxd or other tool.
foreach(var IN ITEMS IN OUT NAME)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "embed.cmake: -D${var}=... is required")
  endif()
endforeach()

file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" digits)
math(EXPR bytes "${digits} / 2")
# Sixteen bytes (32 hex digits) a line.
set(body "")
if(digits GREATER 0)
  math(EXPR last "${digits} - 1")
  foreach(offset RANGE 0 ${last} 32)
    string(SUBSTRING "${hex}" ${offset} 32 line)
    string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," line "${line}")
    string(APPEND body "  ${line}\n")
  endforeach()
endif()

file(WRITE "${OUT}.tmp"
  "/* Generated from ${IN} by embed.cmake: edit that file, not this one. */\n"
  "#include <stddef.h>\n\n"
  "extern const unsigned char ${NAME}[];\n"
  "extern const size_t ${NAME}_len;\n\n"
  "const unsigned char ${NAME}[] = {\n${body}  0x00};\n"
  "const size_t ${NAME}_len = ${bytes};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
