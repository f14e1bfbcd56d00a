# The official BLAKE3 C implementation, as Debian ships it inside librust-blake3-dev.
# Every SIMD variant is compiled in; blake3_dispatch.c picks one at run time from CPUID.
set(BLAKE3_C_DIR "/usr/share/cargo/registry/blake3-1.3.1/c" CACHE PATH "BLAKE3 C sources")
if(NOT EXISTS "${BLAKE3_C_DIR}/blake3.c")
  message(FATAL_ERROR "BLAKE3 C sources not found in ${BLAKE3_C_DIR}: run scripts/install-deps.sh")
endif()

set(BLAKE3_SOURCES
  ${BLAKE3_C_DIR}/blake3.c
  ${BLAKE3_C_DIR}/blake3_dispatch.c
  ${BLAKE3_C_DIR}/blake3_portable.c)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64")
  # The assembly variants for the System V ABI; they carry their own ISA requirements.
  list(APPEND BLAKE3_SOURCES
    ${BLAKE3_C_DIR}/blake3_sse2_x86-64_unix.S
    ${BLAKE3_C_DIR}/blake3_sse41_x86-64_unix.S
    ${BLAKE3_C_DIR}/blake3_avx2_x86-64_unix.S
    ${BLAKE3_C_DIR}/blake3_avx512_x86-64_unix.S)
  set(BLAKE3_DEFINITIONS "")
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64")
  list(APPEND BLAKE3_SOURCES ${BLAKE3_C_DIR}/blake3_neon.c)
  set(BLAKE3_DEFINITIONS BLAKE3_USE_NEON=1)
else()
  set(BLAKE3_DEFINITIONS BLAKE3_NO_SSE2 BLAKE3_NO_SSE41 BLAKE3_NO_AVX2 BLAKE3_NO_AVX512)
endif()

add_library(tapedeck_blake3 STATIC ${BLAKE3_SOURCES})
target_include_directories(tapedeck_blake3 SYSTEM PUBLIC ${BLAKE3_C_DIR})
target_compile_definitions(tapedeck_blake3 PRIVATE ${BLAKE3_DEFINITIONS})
set_target_properties(tapedeck_blake3 PROPERTIES POSITION_INDEPENDENT_CODE ON)

# The preload library's own copy: never sanitized (it loads into programs that are not) and
# hidden (a program's own BLAKE3, if it has one, must not be interposed).
add_library(tapedeck_blake3_preload OBJECT ${BLAKE3_SOURCES})
target_include_directories(tapedeck_blake3_preload SYSTEM PUBLIC ${BLAKE3_C_DIR})
target_compile_definitions(tapedeck_blake3_preload PRIVATE ${BLAKE3_DEFINITIONS})
target_compile_options(tapedeck_blake3_preload PRIVATE -fno-sanitize=all -fvisibility=hidden)
set_target_properties(tapedeck_blake3_preload PROPERTIES POSITION_INDEPENDENT_CODE ON)
