#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs each for a bounded time: the
# reader, seeded with the format's ground-truth vectors, and hostile tapes' paths applied in a
# replay's view (a canary beside it checked after every case), seeded with those and an escaping
# tape, and tape files by their bytes (plain, zstd-compressed, packed) read and unpacked, seeded
# with the vectors compressed and packed. Usage: scripts/fuzz.sh [SECONDS] (default 60, for each)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
vectors=tests/vectors
cmake -S . -B build/fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DTAPEDECK_FUZZ=ON -DBUILD_TESTING=OFF -DTAPEDECK_BENCH=OFF >/dev/null
cmake --build build/fuzz --target tape_reader_fuzzer tape_effects_fuzzer tape_file_fuzzer
corpus=build/fuzz/corpus
mkdir -p "$corpus" build/fuzz/crashes
find "$vectors" -name '*.tape' -type f -exec cp {} "$corpus/" \;
echo "fuzzing the tape reader for ${seconds}s (corpus: $corpus)"
build/fuzz/fuzz/tape_reader_fuzzer "$corpus" -dict=fuzz/tape.dict -max_total_time="$seconds" \
  -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix=build/fuzz/crashes/ 2>&1 | tail -n 12

effects=build/fuzz/effects_corpus
mkdir -p "$effects"
find "$vectors" fuzz/effects_seeds -name '*.tape' -type f -exec cp {} "$effects/" \;
echo "fuzzing hostile tapes' paths in a replay's view for ${seconds}s (corpus: $effects)"
build/fuzz/fuzz/tape_effects_fuzzer "$effects" -dict=fuzz/tape.dict -max_total_time="$seconds" \
  -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix=build/fuzz/crashes/ 2>&1 | tail -n 12

# Tape files by their content: the vectors compressed, and packs of them (a tape with its sidecar).
files=build/fuzz/file_corpus
rm -rf "$files" && mkdir -p "$files"
for vector in "$vectors"/canonical/*.tape "$vectors"/errors/*.tape; do
  zstd -q -c "$vector" > "$files/$(basename "$vector").zst"
done
tar --zstd -cf "$files/payload_paths.tdk" -C "$vectors/canonical" payload_paths.tape payload_paths.tape.cas
tar --zstd -cf "$files/all_kinds.tdk" -C "$vectors/canonical" all_kinds.tape
echo "fuzzing tape files (plain, compressed, packed) read and unpacked for ${seconds}s (corpus: $files)"
build/fuzz/fuzz/tape_file_fuzzer "$files" -max_total_time="$seconds" \
  -max_len=65536 -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix=build/fuzz/crashes/ 2>&1 | tail -n 12
