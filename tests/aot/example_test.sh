#!/usr/bin/env bash
# Builds examples/aot_app against convgen found with find_package(convgen) -- once from an install
# prefix (cmake --install of this build) and once from the build tree -- runs its demo on .npy
# data, and checks that the executable links neither libHalide nor libLLVM.
# usage: example_test.sh SOURCE_DIR BUILD_DIR WORK_DIR
set -euo pipefail
src=$1 build=$2 work=$3
rm -rf "$work" && mkdir -p "$work/data"

cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
test -f "$work/prefix/lib/cmake/convgen/convgenConfig.cmake"

check_app() {  # $1: app build dir
    local app=$1/aot_app
    "$app" demo "$work/data"
    "$app" explain | grep -q "chosen:   AOT variant"
    local libs
    libs=$(ldd "$app")
    echo "$libs"
    if grep -Eiq "libHalide|libLLVM" <<< "$libs"; then
        echo "FAIL: $app links libHalide or libLLVM" >&2
        exit 1
    fi
    test -s "$work/data/seed_conv_output.npy" && test -s "$work/data/seed_dwconv_output.npy"
}

echo "== from the install prefix"
cmake -S "$src/examples/aot_app" -B "$work/app-installed" -G Ninja -DCMAKE_PREFIX_PATH="$work/prefix" > "$work/configure1.log"
cmake --build "$work/app-installed" > "$work/build1.log"
check_app "$work/app-installed"

echo "== from the build tree"
cmake -S "$src/examples/aot_app" -B "$work/app-buildtree" -G Ninja -Dconvgen_DIR="$build" > "$work/configure2.log"
cmake --build "$work/app-buildtree" > "$work/build2.log"
check_app "$work/app-buildtree"
echo "example_test: OK"
