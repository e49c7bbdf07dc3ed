#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <stdexcept>
#include <string>

#include "device_memory.hpp"
#include "lipcert/cuda/power_iteration.hpp"

namespace lipcert::cuda {

namespace {

using detail::check;
using detail::DeviceArray;

// Matrices are packed column-major one after another; dims[2k], dims[2k+1] = rows, cols of matrix k.
// grid.y indexes the matrix, grid.x * blockDim.x the output entry.
__global__ void matvec(const double* a, const long long* a_offset, const int* dims, const double* x,
                       const long long* x_offset, double* y, const long long* y_offset) {
  const int k = blockIdx.y;
  const int rows = dims[2 * k], cols = dims[2 * k + 1];
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= rows) return;
  const double* ak = a + a_offset[k];
  const double* xk = x + x_offset[k];
  double sum = 0.0;
  for (int j = 0; j < cols; ++j) sum += ak[i + static_cast<long long>(j) * rows] * xk[j];
  y[y_offset[k] + i] = sum;
}

__global__ void matvec_transposed(const double* a, const long long* a_offset, const int* dims, const double* y,
                                  const long long* y_offset, double* x, const long long* x_offset) {
  const int k = blockIdx.y;
  const int rows = dims[2 * k], cols = dims[2 * k + 1];
  const int j = blockIdx.x * blockDim.x + threadIdx.x;
  if (j >= cols) return;
  const double* col = a + a_offset[k] + static_cast<long long>(j) * rows;
  const double* yk = y + y_offset[k];
  double sum = 0.0;
  for (int i = 0; i < rows; ++i) sum += col[i] * yk[i];
  x[x_offset[k] + j] = sum;
}

// One block per vector: norms[k] = ||v_k||, and v_k /= ||v_k|| when scale is set.
__global__ void normalize(double* v, const long long* offset, const int* lengths, int stride, double* norms,
                          bool scale) {
  extern __shared__ double partial[];
  const int k = blockIdx.x;
  const int n = lengths[stride * k];
  double* vk = v + offset[k];
  double sum = 0.0;
  for (int i = threadIdx.x; i < n; i += blockDim.x) sum += vk[i] * vk[i];
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
    __syncthreads();
  }
  const double norm = sqrt(partial[0]);
  if (threadIdx.x == 0) norms[k] = norm;
  if (scale && norm > 0)
    for (int i = threadIdx.x; i < n; i += blockDim.x) vk[i] /= norm;
}

}  // namespace

int device_count() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error so later calls start clean
    return 0;
  }
  return count;
}

std::vector<double> batched_power_iteration(const std::vector<MatrixView>& matrices, int iterations,
                                            unsigned long long seed) {
  const int batch = static_cast<int>(matrices.size());
  if (batch == 0) return {};
  std::vector<long long> a_offset(batch), x_offset(batch), y_offset(batch);
  std::vector<int> dims(2 * batch);
  long long a_total = 0, x_total = 0, y_total = 0;
  int max_rows = 1, max_cols = 1;
  for (int k = 0; k < batch; ++k) {
    const MatrixView& m = matrices[k];
    a_offset[k] = a_total;
    x_offset[k] = x_total;
    y_offset[k] = y_total;
    dims[2 * k] = m.rows;
    dims[2 * k + 1] = m.cols;
    a_total += static_cast<long long>(m.rows) * m.cols;
    x_total += m.cols;
    y_total += m.rows;
    max_rows = std::max(max_rows, m.rows);
    max_cols = std::max(max_cols, m.cols);
  }
  std::vector<double> a_host(a_total), x_host(x_total);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  for (int k = 0; k < batch; ++k) {
    const MatrixView& m = matrices[k];
    std::copy(m.data, m.data + static_cast<long long>(m.rows) * m.cols, a_host.begin() + a_offset[k]);
    for (int j = 0; j < m.cols; ++j) x_host[x_offset[k] + j] = normal(rng);
  }
  std::vector<int> col_lengths(batch), row_lengths(batch);
  for (int k = 0; k < batch; ++k) col_lengths[k] = dims[2 * k + 1], row_lengths[k] = dims[2 * k];

  DeviceArray<double> a(a_total), x(x_total), y(y_total), norms(batch);
  DeviceArray<long long> ao(batch), xo(batch), yo(batch);
  DeviceArray<int> d(2 * batch), cl(batch), rl(batch);
  check(cudaMemcpy(a.ptr, a_host.data(), a_total * sizeof(double), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(x.ptr, x_host.data(), x_total * sizeof(double), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(ao.ptr, a_offset.data(), batch * sizeof(long long), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(xo.ptr, x_offset.data(), batch * sizeof(long long), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(yo.ptr, y_offset.data(), batch * sizeof(long long), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(d.ptr, dims.data(), 2 * batch * sizeof(int), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(cl.ptr, col_lengths.data(), batch * sizeof(int), cudaMemcpyHostToDevice), "copy");
  check(cudaMemcpy(rl.ptr, row_lengths.data(), batch * sizeof(int), cudaMemcpyHostToDevice), "copy");

  const int threads = 256;
  const dim3 rows_grid((max_rows + threads - 1) / threads, batch), cols_grid((max_cols + threads - 1) / threads, batch);
  const size_t shared = threads * sizeof(double);
  normalize<<<batch, threads, shared>>>(x.ptr, xo.ptr, cl.ptr, 1, norms.ptr, true);
  for (int it = 0; it < iterations; ++it) {
    matvec<<<rows_grid, threads>>>(a.ptr, ao.ptr, d.ptr, x.ptr, xo.ptr, y.ptr, yo.ptr);
    matvec_transposed<<<cols_grid, threads>>>(a.ptr, ao.ptr, d.ptr, y.ptr, yo.ptr, x.ptr, xo.ptr);
    normalize<<<batch, threads, shared>>>(x.ptr, xo.ptr, cl.ptr, 1, norms.ptr, true);
  }
  matvec<<<rows_grid, threads>>>(a.ptr, ao.ptr, d.ptr, x.ptr, xo.ptr, y.ptr, yo.ptr);
  normalize<<<batch, threads, shared>>>(y.ptr, yo.ptr, rl.ptr, 1, norms.ptr, false);
  check(cudaGetLastError(), "kernel launch");
  std::vector<double> sigma(batch);
  check(cudaMemcpy(sigma.data(), norms.ptr, batch * sizeof(double), cudaMemcpyDeviceToHost), "copy back");
  return sigma;
}

}  // namespace lipcert::cuda
