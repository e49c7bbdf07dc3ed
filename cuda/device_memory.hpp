#pragma once
// Error checking and an owning device array, shared by the CUDA sources (not installed).
#include <cuda_runtime.h>

#include <cstddef>
#include <stdexcept>
#include <string>

namespace lipcert::cuda::detail {

inline void check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(status));
}

/// n elements of device memory, freed on destruction.
template <typename T>
struct DeviceArray {
  T* ptr = nullptr;
  explicit DeviceArray(size_t n) { check(cudaMalloc(&ptr, (n ? n : 1) * sizeof(T)), "cudaMalloc"); }
  ~DeviceArray() { cudaFree(ptr); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
};

}  // namespace lipcert::cuda::detail
