# Cross-build for 64-bit ARM Linux with Debian's cross g++
# (apt-get install g++-aarch64-linux-gnu libc6-dev-arm64-cross). GCC's libstdc++ matches the C++
# runtime the apache-tvm wheels were built against, so the runner and libtvm_runtime.so agree on ABI.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
# Headers and libraries come from explicit paths (TVM_FFI_ROOT, TVM_ROOT); never search the host's.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
