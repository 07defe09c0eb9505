// sqnxt-runner: run a library written by sqnxt-compile with the TVM runtime alone (no Python).
//
//   sqnxt-runner MODEL.so INPUT.npy OUTPUT.npy [--repeat N]
//
// Loads the library, creates the Relax VM on the CPU, feeds one float32 .npy input to `main` and
// writes its first output as a float32 .npy. With --repeat N it also prints the median latency.
#include <dlpack/dlpack.h>
#include <tvm/ffi/any.h>
#include <tvm/ffi/container/array.h>
#include <tvm/ffi/container/shape.h>
#include <tvm/ffi/container/tensor.h>
#include <tvm/ffi/error.h>
#include <tvm/ffi/extra/module.h>
#include <tvm/ffi/function.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <numeric>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace ffi = tvm::ffi;

namespace {

// TVM's kernels are compiled assuming 64-byte aligned buffers (its kAllocAlignment).
constexpr size_t kAlignment = 64;
// Relax VM allocator kinds (tvm::runtime::memory::AllocatorType); pooled is what Python uses too.
constexpr int kPooledAllocator = 2;

struct AlignedCPUAlloc {
  void AllocData(DLTensor* tensor) {
    size_t bytes = ffi::GetDataSize(*tensor);
    size_t rounded = (bytes + kAlignment - 1) / kAlignment * kAlignment;
    tensor->data = std::aligned_alloc(kAlignment, std::max(rounded, kAlignment));
    if (tensor->data == nullptr) throw std::runtime_error("out of memory");
  }
  void FreeData(DLTensor* tensor) { std::free(tensor->data); }
};

struct Float32Array {
  std::vector<int64_t> shape;
  std::vector<float> values;
};

// The subset of the .npy format numpy.save writes for a C-ordered little-endian float32 array.
Float32Array ReadNpy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open input '" + path + "'");
  char magic[8];
  in.read(magic, 8);
  if (!in || std::memcmp(magic, "\x93NUMPY", 6) != 0) throw std::runtime_error("'" + path + "' is not a .npy file");
  uint32_t header_length = 0;
  if (magic[6] == 1) {
    uint8_t bytes[2];
    in.read(reinterpret_cast<char*>(bytes), 2);
    header_length = bytes[0] | (bytes[1] << 8);
  } else {
    uint8_t bytes[4];
    in.read(reinterpret_cast<char*>(bytes), 4);
    header_length = bytes[0] | (bytes[1] << 8) | (bytes[2] << 16) | (uint32_t(bytes[3]) << 24);
  }
  std::string header(header_length, '\0');
  in.read(header.data(), header_length);
  if (header.find("'descr': '<f4'") == std::string::npos)
    throw std::runtime_error("'" + path + "' must hold float32 data (np.float32)");
  if (header.find("'fortran_order': False") == std::string::npos)
    throw std::runtime_error("'" + path + "' must be C-ordered (np.ascontiguousarray)");
  size_t open = header.find('(', header.find("'shape'"));
  size_t close = header.find(')', open);
  Float32Array array;
  std::stringstream dims(header.substr(open + 1, close - open - 1));
  for (std::string dim; std::getline(dims, dim, ',');) {
    if (dim.find_first_not_of(' ') != std::string::npos) array.shape.push_back(std::stoll(dim));
  }
  int64_t count = std::accumulate(array.shape.begin(), array.shape.end(), int64_t{1}, std::multiplies<>());
  array.values.resize(count);
  in.read(reinterpret_cast<char*>(array.values.data()), count * sizeof(float));
  if (!in) throw std::runtime_error("'" + path + "' is truncated");
  return array;
}

void WriteNpy(const std::string& path, const ffi::Tensor& tensor) {
  DLDataType dtype = tensor.dtype();
  if (dtype.code != kDLFloat || dtype.bits != 32 || dtype.lanes != 1)
    throw std::runtime_error("the model's output is not float32");
  std::string shape;
  for (int64_t dim : tensor.shape()) shape += std::to_string(dim) + ", ";
  if (tensor.ndim() > 1) shape.resize(shape.size() - 1);  // numpy writes (1, 1000) but (5,)
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape + "), }";
  // Version 1.0: magic + 2-byte length, header padded with spaces to a multiple of 64, ending in '\n'.
  size_t total = 10 + header.size() + 1;
  header.append((kAlignment - total % kAlignment) % kAlignment, ' ');
  header.push_back('\n');
  std::ofstream out(path, std::ios::binary);
  out.write("\x93NUMPY\x01\x00", 8);
  uint16_t length = static_cast<uint16_t>(header.size());
  char length_bytes[2] = {static_cast<char>(length & 0xff), static_cast<char>(length >> 8)};
  out.write(length_bytes, 2);
  out.write(header.data(), header.size());
  const char* data = static_cast<const char*>(tensor.data_ptr()) + tensor.byte_offset();
  out.write(data, ffi::GetDataSize(tensor));
  if (!out) throw std::runtime_error("cannot write output '" + path + "'");
}

// `main` returns one tensor, or a tuple whose first element (possibly nested) is the first output.
ffi::Tensor FirstTensor(const ffi::Any& result) {
  if (auto tensor = result.try_cast<ffi::Tensor>()) return *tensor;
  if (auto tuple = result.try_cast<ffi::Array<ffi::Any>>()) {
    if (!tuple->empty()) return FirstTensor((*tuple)[0]);
  }
  throw std::runtime_error("the model's main function returned no tensor");
}

int Run(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  int repeat = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--repeat" && i + 1 < args.size()) {
      repeat = std::stoi(args[i + 1]);
      args.erase(args.begin() + i, args.begin() + i + 2);
      break;
    }
  }
  if (args.size() != 3) {
    std::cerr << "usage: sqnxt-runner MODEL.so INPUT.npy OUTPUT.npy [--repeat N]\n";
    return 2;
  }
  const std::string& library_path = args[0];
  const std::string& input_path = args[1];
  const std::string& output_path = args[2];

  // dlopen() searches the library path for a name without a '/': make it a path.
  ffi::Module library = ffi::Module::LoadFromFile(std::filesystem::absolute(library_path).string());
  ffi::Module vm = library->GetFunction("vm_load_executable").value()().cast<ffi::Module>();
  // One device (the CPU): device type, device id, allocator, as relax.VirtualMachine passes them.
  vm->GetFunction("vm_initialization").value()(static_cast<int>(kDLCPU), 0, kPooledAllocator);
  ffi::Function main_function = vm->GetFunction("main").value();

  Float32Array input = ReadNpy(input_path);
  DLDevice cpu{kDLCPU, 0};
  ffi::Tensor input_tensor = ffi::Tensor::FromNDAlloc(
      AlignedCPUAlloc(), ffi::Shape(input.shape.begin(), input.shape.end()), DLDataType{kDLFloat, 32, 1}, cpu);
  std::memcpy(input_tensor.data_ptr(), input.values.data(), input.values.size() * sizeof(float));

  ffi::Tensor output = FirstTensor(main_function(input_tensor));
  WriteNpy(output_path, output);
  std::cout << "wrote " << output_path << " (output shape";
  for (int64_t dim : output.shape()) std::cout << ' ' << dim;
  std::cout << ")\n";

  if (repeat > 0) {
    std::vector<double> milliseconds;
    for (int i = 0; i < repeat; ++i) {
      auto start = std::chrono::steady_clock::now();
      main_function(input_tensor);
      milliseconds.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count());
    }
    std::nth_element(milliseconds.begin(), milliseconds.begin() + repeat / 2, milliseconds.end());
    std::cout << "latency: median " << milliseconds[repeat / 2] << " ms over " << repeat << " runs\n";
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // TVM's thread pool otherwise starts cores/2 threads on x86 (assuming hyper-threading) pinned to cores;
  // use every core, unpinned, as sqnxt_compiler.load does. The pool reads these on first use; a user's
  // own setting wins (overwrite = 0).
  setenv("TVM_NUM_THREADS", std::to_string(std::max(1u, std::thread::hardware_concurrency())).c_str(), 0);
  setenv("TVM_BIND_THREADS", "0", 0);
  try {
    return Run(argc, argv);
  } catch (const std::exception& err) {  // ffi::Error included: one line, like the Python tools
    std::cerr << "error: " << err.what() << "\n";
    return 1;
  }
}
