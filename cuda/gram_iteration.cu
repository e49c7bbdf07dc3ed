// Certified spectral norms by Gram iteration on the GPU; the error analysis is in gram_iteration.hpp.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>
#include <string>
#include <vector>

#include "device_memory.hpp"
#include "lipcert/cuda/gram_iteration.hpp"
#include "lipcert/rounding.hpp"
#include "lipcert/spectral_norm.hpp"

namespace lipcert::cuda {

namespace {

using detail::check;
using detail::DeviceArray;

// Real and complex (double2) scalars share the kernels through these few operations.
__device__ inline void conj_mul_add(double& acc, double a, double b) { acc = fma(a, b, acc); }
__device__ inline void conj_mul_add(double2& acc, double2 a, double2 b) {
  acc.x = fma(a.x, b.x, fma(a.y, b.y, acc.x));
  acc.y = fma(a.x, b.y, fma(-a.y, b.x, acc.y));
}
__device__ inline double conj(double a) { return a; }
__device__ inline double2 conj(double2 a) { return make_double2(a.x, -a.y); }
__device__ inline double real_part(double a) { return a; }
__device__ inline double2 real_part(double2 a) { return make_double2(a.x, 0.0); }
__device__ inline double abs2_up(double a) { return __dmul_ru(a, a); }
__device__ inline double abs2_up(double2 a) { return __dadd_ru(__dmul_ru(a.x, a.x), __dmul_ru(a.y, a.y)); }
__device__ inline double scaled(double a, double s) { return a * s; }
__device__ inline double2 scaled(double2 a, double s) { return make_double2(a.x * s, a.y * s); }
template <typename T>
__device__ inline T zero() { return T{}; }

constexpr int kTile = 64, kDepth = 16, kThreads = 256;

// C_b = P_b^H P_b (d x d, column-major) where P_b(l, i) = src[b * batch_stride + l * sl + i * si],
// l < len, i < d. Only tiles on or above the diagonal are computed; each writes its mirror image, so
// C_b is exactly Hermitian (the diagonal's imaginary rounding residue is dropped: its exact value is 0).
template <typename T>
__global__ void __launch_bounds__(kThreads) gram_product(const T* __restrict__ src, long long batch_stride, long long sl,
                                                         long long si, int len, int d, T* __restrict__ dst) {
  if (blockIdx.y < blockIdx.x) return;
  __shared__ T sa[kDepth][kTile + 1], sb[kDepth][kTile + 1];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int i0 = blockIdx.x * kTile, j0 = blockIdx.y * kTile;
  const T* p = src + blockIdx.z * batch_stride;
  T acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = zero<T>();
  for (int l0 = 0; l0 < len; l0 += kDepth) {
    for (int t = threadIdx.x; t < kTile * kDepth; t += kThreads) {
      // Coalesced reads: consecutive threads take consecutive addresses along the contiguous index.
      const int r = sl == 1 ? t / kDepth : t % kTile, l = sl == 1 ? t % kDepth : t / kTile;
      const bool in_l = l0 + l < len;
      sa[l][r] = (in_l && i0 + r < d) ? p[(l0 + l) * sl + (i0 + r) * si] : zero<T>();
      sb[l][r] = (in_l && j0 + r < d) ? p[(l0 + l) * sl + (j0 + r) * si] : zero<T>();
    }
    __syncthreads();
#pragma unroll
    for (int l = 0; l < kDepth; ++l) {
      T a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sa[l][ty * 4 + i], b[i] = sb[l][tx * 4 + i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) conj_mul_add(acc[i][j], a[i], b[j]);
    }
    __syncthreads();
  }
  T* c = dst + static_cast<long long>(blockIdx.z) * d * d;
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int row = i0 + ty * 4 + i, col = j0 + tx * 4 + j;
      if (row >= d || col >= d || col < row) continue;
      if (row == col) {
        c[row + static_cast<long long>(col) * d] = real_part(acc[i][j]);
      } else {
        c[row + static_cast<long long>(col) * d] = acc[i][j];
        c[col + static_cast<long long>(row) * d] = conj(acc[i][j]);
      }
    }
}

// out[b] >= ||X_b||_F^2 (every operation rounded upward), one block per matrix of n entries.
template <typename T>
__global__ void frobenius2_up(const T* __restrict__ x, long long n, double* __restrict__ out) {
  __shared__ double partial[kThreads];
  const T* xb = x + blockIdx.x * n;
  double sum = 0.0;
  for (long long i = threadIdx.x; i < n; i += kThreads) sum = __dadd_ru(sum, abs2_up(xb[i]));
  partial[threadIdx.x] = sum;
  __syncthreads();
  for (int s = kThreads / 2; s > 0; s >>= 1) {
    if (threadIdx.x < s) partial[threadIdx.x] = __dadd_ru(partial[threadIdx.x], partial[threadIdx.x + s]);
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// X_b *= scale[b], a power of two (exact unless a result is subnormal).
template <typename T>
__global__ void scale_by(T* x, long long n, const double* __restrict__ scale) {
  const long long b = blockIdx.y;
  for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<long long>(gridDim.x) * blockDim.x)
    x[b * n + i] = scaled(x[b * n + i], scale[b]);
}

// Transfer matrices of frequencies first..first+count-1 (f = u * nw + v), oc x ic column-major each,
// in the order of operations of lipcert::conv_circulant_spectral_bound.
__global__ void transfer_matrices(const double* __restrict__ weight, int oc, int ic, int kh, int kw,
                                  const double2* __restrict__ twiddle_h, int nh, const double2* __restrict__ twiddle_w,
                                  int nw, int first, int count, double2* __restrict__ out) {
  const long long entries = static_cast<long long>(oc) * ic;
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= entries * count) return;
  const int f = first + static_cast<int>(t / entries);
  const int o = static_cast<int>(t % entries) % oc, c = static_cast<int>(t % entries) / oc;
  const int u = f / nw, v = f % nw;
  double2 acc = make_double2(0.0, 0.0);
  for (int a = 0; a < kh; ++a)
    for (int b = 0; b < kw; ++b) {
      const double2 th = twiddle_h[(u * a) % nh], tw = twiddle_w[(v * b) % nw];
      const double2 phase = make_double2(th.x * tw.x - th.y * tw.y, th.x * tw.y + th.y * tw.x);
      const double w = weight[o + static_cast<long long>((c * kh + a) * kw + b) * oc];
      acc.x += w * phase.x;
      acc.y += w * phase.y;
    }
  out[t] = acc;
}

// Covers underflow in the products and subnormal results of the power-of-two rescaling; every matrix
// is scaled to a Frobenius norm near 1 first, so this is far below the rounding errors.
constexpr double kTiny = 1e-300;
constexpr double kStopTolerance = 1e-11;

// Gram iteration on `count` matrices of rows x cols (column-major, consecutive) on the device; they
// are rescaled in place by powers of two. complex_factor scales the inner-product length in gamma (4
// for complex arithmetic).
template <typename T>
std::vector<GramBound> gram_batch(T* a, int rows, int cols, int count, double complex_factor, int max_iterations) {
  const int d = std::min(rows, cols), len0 = std::max(rows, cols);
  const long long square = static_cast<long long>(d) * d;
  DeviceArray<T> y(count * square), z(count * square);
  DeviceArray<double> norms(count), scales(count);
  std::vector<double> host(count);
  auto frobenius2 = [&](const T* x, long long n) {
    frobenius2_up<T><<<count, kThreads>>>(x, n, norms.ptr);
    check(cudaMemcpy(host.data(), norms.ptr, count * sizeof(double), cudaMemcpyDeviceToHost), "download");
    return host;
  };
  // Scales every matrix to a Frobenius norm near 1 (so nothing overflows and the absolute kTiny is
  // negligible) and returns the exponents m: X_before = 2^m X_after, up to subnormal rounding.
  auto normalise = [&](T* x, long long n) {
    const std::vector<double> f2 = frobenius2(x, n);
    std::vector<int> m(count);
    std::vector<double> s(count);
    for (int b = 0; b < count; ++b) {
      m[b] = f2[b] > 0 && std::isfinite(f2[b]) ? std::ilogb(std::sqrt(f2[b])) : 0;
      s[b] = std::ldexp(1.0, -m[b]);
    }
    check(cudaMemcpy(scales.ptr, s.data(), count * sizeof(double), cudaMemcpyHostToDevice), "upload");
    scale_by<T><<<dim3(static_cast<unsigned>(std::min<long long>((n + 255) / 256, 1024)), count), 256>>>(x, n, scales.ptr);
    check(cudaGetLastError(), "scale_by");
    return m;
  };
  // exponents[k]: Y_k = 2^-m (Y_{k-1}^H Y_{k-1} + E), and exponents[0] scales A itself.
  std::vector<std::vector<int>> exponents{normalise(a, static_cast<long long>(rows) * cols)};
  std::vector<std::vector<double>> fro2{frobenius2(a, static_cast<long long>(rows) * cols)}, eps;
  std::vector<GramBound> best(count, GramBound{std::numeric_limits<double>::infinity(), 0});
  for (int k = 0; k < max_iterations; ++k) {
    // Level 0 squares the smaller side: P = A (A^H A) when rows >= cols, else P = A^T (conj(A A^H)).
    const T* src = k == 0 ? a : y.ptr;
    const long long batch_stride = k == 0 ? static_cast<long long>(rows) * cols : square;
    const long long sl = k == 0 && rows < cols ? rows : 1, si = k == 0 && rows < cols ? 1 : (k == 0 ? rows : d);
    const int len = k == 0 ? len0 : d;
    const dim3 grid((d + kTile - 1) / kTile, (d + kTile - 1) / kTile, count);
    gram_product<T><<<grid, kThreads>>>(src, batch_stride, sl, si, len, d, z.ptr);
    check(cudaGetLastError(), "gram_product");
    std::vector<double> e(count);
    for (int b = 0; b < count; ++b) e[b] = add_up(mul_up(gamma(complex_factor * (len + 2.0)), fro2[k][b]), kTiny);
    eps.push_back(e);
    exponents.push_back(normalise(z.ptr, square));
    std::swap(y.ptr, z.ptr);
    fro2.push_back(frobenius2(y.ptr, square));
    // Unwind from level k + 1: sigma(Y_j)^2 <= 2^m_{j+1} (sigma(Y_{j+1}) + tiny) + eps_j, then undo A's scaling.
    double worst_gain = 0.0;
    for (int b = 0; b < count; ++b) {
      double u = sqrt_up(fro2[k + 1][b]);
      for (int j = k; j >= 0; --j) u = sqrt_up(add_up(std::ldexp(add_up(u, kTiny), exponents[j + 1][b]), eps[j][b]));
      u = std::ldexp(add_up(u, kTiny), exponents[0][b]);
      if (u < best[b].upper) {
        const double gain = std::isfinite(best[b].upper) ? (best[b].upper - u) / best[b].upper : 1.0;
        worst_gain = std::max(worst_gain, gain);
        best[b] = {u, k + 1};
      }
    }
    if (worst_gain < kStopTolerance) break;
  }
  for (int b = 0; b < count; ++b) {
    best[b].iterations = std::max(best[b].iterations, 1);
    if (fro2[0][b] == 0.0) best[b].upper = 0.0;  // an upward-rounded sum of squares is 0 only for A = 0
  }
  return best;
}

}  // namespace

std::vector<GramBound> gram_spectral_upper(const std::vector<MatrixView>& matrices, int max_iterations) {
  if (max_iterations < 1) throw std::invalid_argument("gram_spectral_upper: max_iterations must be >= 1");
  std::vector<GramBound> result(matrices.size());
  std::vector<bool> done(matrices.size(), false);
  for (size_t first = 0; first < matrices.size(); ++first) {
    if (done[first]) continue;
    const int rows = matrices[first].rows, cols = matrices[first].cols;
    std::vector<size_t> group;
    for (size_t k = first; k < matrices.size(); ++k)
      if (!done[k] && matrices[k].rows == rows && matrices[k].cols == cols) group.push_back(k), done[k] = true;
    if (rows == 0 || cols == 0) continue;  // the empty map has norm 0
    const long long size = static_cast<long long>(rows) * cols;
    std::vector<double> packed(size * group.size());
    for (size_t g = 0; g < group.size(); ++g)
      std::copy(matrices[group[g]].data, matrices[group[g]].data + size, packed.begin() + g * size);
    DeviceArray<double> a(packed.size());
    check(cudaMemcpy(a.ptr, packed.data(), packed.size() * sizeof(double), cudaMemcpyHostToDevice), "upload");
    const auto bounds = gram_batch<double>(a.ptr, rows, cols, static_cast<int>(group.size()), 1.0, max_iterations);
    for (size_t g = 0; g < group.size(); ++g) result[group[g]] = bounds[g];
  }
  return result;
}

GramBound conv_gram_spectral_upper(const Layer& conv, int max_iterations) {
  if (conv.kind != LayerKind::Conv2d) throw std::invalid_argument("conv_gram_spectral_upper: not a Conv2d layer");
  if (max_iterations < 1) throw std::invalid_argument("conv_gram_spectral_upper: max_iterations must be >= 1");
  const CirculantEmbedding embedding = circulant_embedding(conv);
  const int oc = conv.out_shape.channels, ic = conv.in_channels;
  const int frequencies = embedding.nh * embedding.nw;
  static_assert(sizeof(double2) == sizeof(std::complex<double>), "complex layout");
  DeviceArray<double> weight(conv.weight.size());
  DeviceArray<double2> twiddle_h(embedding.nh), twiddle_w(embedding.nw);
  check(cudaMemcpy(weight.ptr, conv.weight.data(), conv.weight.size() * sizeof(double), cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(twiddle_h.ptr, embedding.twiddle_h.data(), embedding.nh * sizeof(double2), cudaMemcpyHostToDevice), "upload");
  check(cudaMemcpy(twiddle_w.ptr, embedding.twiddle_w.data(), embedding.nw * sizeof(double2), cudaMemcpyHostToDevice), "upload");
  // Frequencies in chunks of at most ~2^26 complex entries per buffer (1 GiB).
  const long long entries = static_cast<long long>(oc) * ic;
  const long long square = static_cast<long long>(std::min(oc, ic)) * std::min(oc, ic);
  const int chunk = static_cast<int>(std::max<long long>(1, std::min<long long>({frequencies, 65535, (1LL << 26) / std::max(entries, square)})));
  GramBound result{0.0, 0};
  DeviceArray<double2> transfer(chunk * entries);
  for (int first = 0; first < frequencies; first += chunk) {
    const int count = std::min(chunk, frequencies - first);
    const long long threads = entries * count;
    transfer_matrices<<<static_cast<unsigned>((threads + 255) / 256), 256>>>(
        weight.ptr, oc, ic, conv.kernel_h, conv.kernel_w, twiddle_h.ptr, embedding.nh, twiddle_w.ptr, embedding.nw,
        first, count, transfer.ptr);
    check(cudaGetLastError(), "transfer_matrices");
    for (const GramBound& g : gram_batch<double2>(transfer.ptr, oc, ic, count, 4.0, max_iterations)) {
      result.upper = std::max(result.upper, g.upper);
      result.iterations = std::max(result.iterations, g.iterations);
    }
  }
  result.upper = add_up(result.upper, embedding.transfer_error);
  return result;
}

}  // namespace lipcert::cuda
