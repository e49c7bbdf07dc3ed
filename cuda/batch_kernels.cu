// Batched subdomain bounds on the GPU, float64. The arithmetic mirrors lipcert::bound_subdomain:
// every inner product is bounded a priori by gamma_{k+4} times the sum of absolute terms (valid in any
// summation order, with or without FMA), and every quantity that widens a certified interval is
// formed with directed-rounding intrinsics (__dadd_ru, __dmul_ru, ...).
#include <cuda_runtime.h>
#include <math_constants.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>

#include "batch_kernels.hpp"
#include "device_memory.hpp"
#include "jacobian_norm.hpp"

namespace lipcert::cuda::detail {

namespace {

constexpr double kUnit = 0x1.0p-53;

double gamma_of(double n) {
  const double nu = n * kUnit;
  return nu / (1.0 - 2.0 * nu);
}

// A device array that only grows.
template <typename T>
struct Buffer {
  T* ptr = nullptr;
  size_t size = 0;
  Buffer() = default;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept : ptr(other.ptr), size(other.size) { other.ptr = nullptr, other.size = 0; }
  ~Buffer() { cudaFree(ptr); }
  void swap(Buffer& other) {
    std::swap(ptr, other.ptr);
    std::swap(size, other.size);
  }
  void reserve(size_t n) {
    if (n <= size) return;
    cudaFree(ptr);
    ptr = nullptr;
    check(cudaMalloc(&ptr, (n ? n : 1) * sizeof(T)), "cudaMalloc");
    size = n;
  }
};

template <typename T, typename Allocator>
void upload(Buffer<T>& b, const std::vector<T, Allocator>& host) {
  b.reserve(host.size());
  if (!host.empty()) check(cudaMemcpy(b.ptr, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice), "upload");
}

template <typename T, typename Allocator>
void download(std::vector<T, Allocator>& host, const Buffer<T>& b, size_t n) {
  host.resize(n);
  if (n) check(cudaMemcpy(host.data(), b.ptr, n * sizeof(T), cudaMemcpyDeviceToHost), "download");
}

__device__ inline double midpoint(double lo, double hi) { return lo / 2 + hi / 2; }
__device__ inline double half_width_up(double lo, double hi, double c) { return fmax(__dsub_ru(hi, c), __dsub_ru(c, lo)); }

// Y = X M for rows of X (rows x k, row-major) and M (k x n, row-major), in midpoint-radius interval
// form: yc = xc M + bias, yr >= |Y* - yc| for every X* with |X* - xc| <= xr and the exact product.
// yr = (xr |M| + g (|xc| |M| + xr |M| + |bias|)) (1 + g), g = gamma_{k+4}, rounded upward.
constexpr int kTile = 64, kDepth = 16, kThreads = 256;

__global__ void __launch_bounds__(kThreads) interval_product(const double* __restrict__ xc, const double* __restrict__ xr,
                                                             int rows, int k, const double* __restrict__ m, int n,
                                                             const double* __restrict__ bias, double g, double one_plus_g,
                                                             double* __restrict__ yc, double* __restrict__ yr) {
  __shared__ double sc[kDepth][kTile], sr[kDepth][kTile], sm[kDepth][kTile];
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const long long row0 = static_cast<long long>(blockIdx.x) * kTile;
  const int col0 = blockIdx.y * kTile;
  double s1[4][4] = {}, s2[4][4] = {}, s3[4][4] = {};
  for (int k0 = 0; k0 < k; k0 += kDepth) {
    for (int t = threadIdx.x; t < kTile * kDepth; t += kThreads) {
      const int r = t / kDepth, kc = t % kDepth;
      const long long gr = row0 + r;
      const int gk = k0 + kc;
      const bool inside = gr < rows && gk < k;
      sc[kc][r] = inside ? xc[gr * k + gk] : 0.0;
      sr[kc][r] = inside ? xr[gr * k + gk] : 0.0;
      const int mk = t / kTile, c = t % kTile;
      sm[mk][c] = (k0 + mk < k && col0 + c < n) ? m[static_cast<long long>(k0 + mk) * n + col0 + c] : 0.0;
    }
    __syncthreads();
#pragma unroll
    for (int kc = 0; kc < kDepth; ++kc) {
      double a[4], ar[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = sc[kc][ty * 4 + i], ar[i] = sr[kc][ty * 4 + i], b[i] = sm[kc][tx * 4 + i];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          s1[i][j] = fma(a[i], b[j], s1[i][j]);
          s2[i][j] = fma(fabs(a[i]), fabs(b[j]), s2[i][j]);
          s3[i][j] = fma(ar[i], fabs(b[j]), s3[i][j]);
        }
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const long long r = row0 + ty * 4 + i;
    if (r >= rows) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int c = col0 + tx * 4 + j;
      if (c >= n) continue;
      const double b = bias ? bias[c] : 0.0;
      const double terms = __dadd_ru(__dadd_ru(s2[i][j], s3[i][j]), fabs(b));
      yc[r * n + c] = s1[i][j] + b;
      yr[r * n + c] = __dmul_ru(__dadd_ru(s3[i][j], __dmul_ru(g, terms)), one_plus_g);
    }
  }
}

void launch_product(const double* xc, const double* xr, long long rows, int k, const double* m, int n,
                    const double* bias, double* yc, double* yr) {
  if (rows == 0 || n == 0) return;
  const double g = gamma_of(k + 4.0);
  const dim3 grid(static_cast<unsigned>((rows + kTile - 1) / kTile), (n + kTile - 1) / kTile);
  interval_product<<<grid, kThreads>>>(xc, xr, static_cast<int>(rows), k, m, n, bias, g, __builtin_nextafter(1.0 + g, 2.0),
                                       yc, yr);
}

// Per (b, j): the box in midpoint-radius form, and the identity prefix (a^T = I, c = 0).
__global__ void start(int batch, int n, const double* lower, const double* upper, double* box_c, double* box_r,
                      double* lo_out, double* hi_out, double* xc, double* xr, double* pa, double* pea, double* pc, double* pec, int* exact,
                      int* unfixed, int* feasible) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= static_cast<long long>(batch) * n) return;
  const long long b = t / n;
  const int j = static_cast<int>(t % n);
  const double lo = lower[t], hi = upper[t];
  const double c = midpoint(lo, hi), r = half_width_up(lo, hi, c);
  lo_out[t] = lo;
  hi_out[t] = hi;
  box_c[t] = xc[t] = c;
  box_r[t] = xr[t] = r;
  for (int i = 0; i < n; ++i) {
    pa[t * n + i] = i == j ? 1.0 : 0.0;
    pea[t * n + i] = 0.0;
  }
  pc[t] = pec[t] = 0.0;
  if (j == 0) exact[b] = 1, unfixed[b] = 0, feasible[b] = 1;
  if (lo > hi) feasible[b] = 0;
}

// Per (b, i) after an affine layer: the interval [yc - yr, yc + yr], intersected with the range of the
// exact affine prefix a x + c over the box while the prefix is exact; then its midpoint-radius form.
__global__ void affine_bounds(int batch, int width, int n_in, const double* yc, const double* yr, const double* pa,
                              const double* pea, const double* pc, const double* pec, const double* box_c,
                              const double* box_r, const int* exact, double g_in, double* lo_out, double* hi_out,
                              double* xc, double* xr) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= static_cast<long long>(batch) * width) return;
  const long long b = t / width;
  const int i = static_cast<int>(t % width);
  double lo = __dsub_rd(yc[t], yr[t]), hi = __dadd_ru(yc[t], yr[t]);
  if (exact[b]) {
    double center = pc[t], radius = 0.0, abs_sum = 0.0, error_sum = 0.0;
    for (int j = 0; j < n_in; ++j) {
      const long long at = (b * n_in + j) * width + i;
      const double a = pa[at], x = box_c[b * n_in + j], r = box_r[b * n_in + j];
      center = fma(a, x, center);
      radius = fma(fabs(a), r, radius);
      abs_sum = fma(fabs(a), fabs(x), abs_sum);
      error_sum = fma(pea[at], __dadd_ru(fabs(x), r), error_sum);
    }
    const double one_plus_g = __dadd_ru(1.0, g_in);
    // (|a||x| + |a| r + |c|) g + sum ea (|x| + r) (1 + g) + ec, everything rounded upward
    const double err = __dadd_ru(__dadd_ru(__dmul_ru(__dadd_ru(__dadd_ru(abs_sum, radius), fabs(pc[t])), g_in),
                                           __dmul_ru(error_sum, one_plus_g)), pec[t]);
    const double w = __dmul_ru(__dadd_ru(__dmul_ru(radius, one_plus_g), err), one_plus_g);
    lo = fmax(lo, __dsub_rd(center, w));
    hi = fmin(hi, __dadd_ru(center, w));
  }
  lo_out[t] = lo;
  hi_out[t] = hi;
  const double c = midpoint(lo, hi);
  xc[t] = c;
  xr[t] = half_width_up(lo, hi, c);
}

// Per (b, i) at an activation layer: apply the assignment, record the bounds and the derivative
// interval [dm - dr, dm + dr], then the image interval (midpoint-radius) for the next affine layer.
__global__ void activation_forward(int batch, int width, int total, int offset, double slope, const int8_t* states,
                                   const double* lo_in, const double* hi_in, double* pre_lower, double* pre_upper,
                                   double* dm_out, double* dr_out, int* unfixed, int* feasible, double* xc, double* xr) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= static_cast<long long>(batch) * width) return;
  const long long b = t / width;
  const int i = static_cast<int>(t % width);
  const long long at = b * total + offset + i;
  const int s = states[at];
  double lo = lo_in[t], hi = hi_in[t];
  if (s > 0) lo = fmax(lo, 0.0);
  if (s < 0) hi = fmin(hi, 0.0);
  if (lo > hi) feasible[b] = 0;
  const bool active = s > 0 || lo > 0, inactive = s < 0 || hi < 0;
  const double d_lo = active ? 1.0 : inactive ? slope : fmin(slope, 1.0);
  const double d_hi = active ? 1.0 : inactive ? slope : fmax(slope, 1.0);
  const double dm = d_lo / 2 + d_hi / 2;
  const double dr = d_hi == d_lo ? 0.0 : fmax(__dsub_ru(d_hi, dm), __dsub_ru(dm, d_lo));
  pre_lower[at] = lo;
  pre_upper[at] = hi;
  dm_out[at] = dm;
  dr_out[at] = dr;
  if (dr != 0.0) unfixed[b] = 1;
  // image under z -> z (z >= 0), slope z (z < 0), rounded outward
  const double lo_down = lo >= 0 ? lo : __dmul_rd(slope, lo), hi_down = hi >= 0 ? hi : __dmul_rd(slope, hi);
  const double lo_up = lo >= 0 ? lo : __dmul_ru(slope, lo), hi_up = hi >= 0 ? hi : __dmul_ru(slope, hi);
  double new_lo = fmin(lo_down, hi_down), new_hi = fmax(lo_up, hi_up);
  if (lo < 0 && hi > 0) new_lo = fmin(new_lo, 0.0), new_hi = fmax(new_hi, 0.0);
  const double c = midpoint(new_lo, new_hi);
  xc[t] = c;
  xr[t] = half_width_up(new_lo, new_hi, c);
}

// Region rows -s a_i x <= s c_i of the assigned neurons of one activation layer, for the subdomains whose
// prefix is still exact there. One thread per (candidate, input coordinate).
__global__ void gather_region(int count, const RegionCandidate* candidates, int n_in, int width, const double* pa,
                              const double* pea, const double* pc, const double* pec, const int* exact, double* g,
                              double* g_error, double* h, double* h_error, int* used) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= static_cast<long long>(count) * n_in) return;
  const int k = static_cast<int>(t / n_in), j = static_cast<int>(t % n_in);
  const RegionCandidate cand = candidates[k];
  const long long b = cand.subdomain;
  if (!exact[b]) {
    if (j == 0) used[k] = 0;
    return;
  }
  const long long at = (b * n_in + j) * width + cand.neuron;
  g[t] = -cand.sign * pa[at];
  g_error[t] = pea[at];
  if (j == 0) {
    used[k] = 1;
    h[k] = cand.sign * pc[b * width + cand.neuron];
    h_error[k] = pec[b * width + cand.neuron];
  }
}

// Where the prefix stays exact through a layer with every derivative fixed: a <- diag(dm) a, c <- dm c,
// with the rounding of the products added to the error bounds.
__global__ void scale_prefix(int batch, int n_in, int width, int total, int offset, const double* dm_all, double* pa,
                             double* pea, double* pc, double* pec, const int* exact, const int* unfixed) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  const long long per = static_cast<long long>(n_in + 1) * width;
  if (t >= batch * per) return;
  const long long b = t / per;
  if (!exact[b] || unfixed[b]) return;
  const long long rest = t % per;
  const int row = static_cast<int>(rest / width), i = static_cast<int>(rest % width);
  const double d = dm_all[b * total + offset + i];
  const double two_u = 2 * kUnit;
  double* a = row < n_in ? &pa[(b * n_in + row) * width + i] : &pc[b * width + i];
  double* e = row < n_in ? &pea[(b * n_in + row) * width + i] : &pec[b * width + i];
  const double scaled = d * *a;
  *e = __dadd_ru(__dmul_ru(fabs(d), *e), __dmul_ru(fabs(scaled), two_u));
  *a = scaled;
}

__global__ void update_exact(int batch, int* exact, int* unfixed) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  exact[b] = exact[b] && !unfixed[b];
  unfixed[b] = 0;
}

__global__ void start_backward(long long rows, int m, double* c, double* r) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= rows * m) return;
  const long long row = t / m;
  c[t] = (row % m) == (t % m) ? 1.0 : 0.0;
  r[t] = 0.0;
}

// Rows of the transposed Jacobian set through an activation, as on the CPU (multiply_interval in
// cpp/subdomain_bounds.cpp): a fixed derivative scales, c dm +- (r |dm| + |c dm| 2u); a free one takes
// the hull of the four endpoint products of [c - r, c + r] and [dm - dr, dm + dr].
__global__ void activation_backward(long long rows, int m, int width, int total, int offset, const double* dm_all,
                                    const double* dr_all, double* c, double* r) {
  const long long t = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x;
  if (t >= rows * width) return;
  const long long b = t / width / m;
  const int i = static_cast<int>(t % width);
  const double dm = dm_all[b * total + offset + i], dr = dr_all[b * total + offset + i];
  if (dr == 0.0) {
    r[t] = __dadd_ru(__dmul_ru(r[t], fabs(dm)), __dmul_ru(fabs(c[t] * dm), 2 * kUnit));
    c[t] = c[t] * dm;
    return;
  }
  const double lo = __dsub_rd(c[t], r[t]), hi = __dadd_ru(c[t], r[t]), d_lo = __dsub_rd(dm, dr), d_hi = __dadd_ru(dm, dr);
  if (isinf(lo) || isinf(hi)) {  // an overflow: 0 times it would be NaN
    c[t] = 0.0;
    r[t] = CUDART_INF;
    return;
  }
  const double low = fmin(fmin(__dmul_rd(lo, d_lo), __dmul_rd(lo, d_hi)), fmin(__dmul_rd(hi, d_lo), __dmul_rd(hi, d_hi)));
  const double high = fmax(fmax(__dmul_ru(lo, d_lo), __dmul_ru(lo, d_hi)), fmax(__dmul_ru(hi, d_lo), __dmul_ru(hi, d_hi)));
  const double mid = low / 2 + high / 2;
  c[t] = mid;
  r[t] = fmax(__dsub_ru(high, mid), __dsub_ru(mid, low));
}

// || |C| + R ||_{p->q} per subdomain where it has a closed form: the largest row norm (dual of p) when
// q = inf, the largest column q-norm when p = 1; NaN otherwise. For these pairs the entrywise majorant
// is never worse than ||C|| + ||R|| (triangle inequality on each row or column). norm codes: 0 = inf.
__global__ void majorant_norm(int batch, int m, int n, int p, int q, const double* c, const double* r, double* out) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const double* cb = c + static_cast<long long>(b) * m * n;
  const double* rb = r + static_cast<long long>(b) * m * n;
  const bool by_rows = q == 0;
  if (!by_rows && p != 1) {
    out[b] = nan("");
    return;
  }
  const int dual = by_rows ? (p == 0 ? 1 : p == 1 ? 0 : 2) : q;  // the norm taken of each row / column
  const int outer = by_rows ? m : n, inner = by_rows ? n : m;
  double best = 0.0;
  for (int a = 0; a < outer; ++a) {
    double acc = 0.0;
    for (int k = 0; k < inner; ++k) {
      const long long at = by_rows ? static_cast<long long>(a) * n + k : static_cast<long long>(k) * n + a;
      const double v = __dadd_ru(fabs(cb[at]), rb[at]);
      acc = dual == 0 ? fmax(acc, v) : dual == 1 ? __dadd_ru(acc, v) : __dadd_ru(acc, __dmul_ru(v, v));
    }
    best = fmax(best, dual == 2 ? __dsqrt_ru(acc) : acc);
  }
  out[b] = best;
}

unsigned blocks(long long n, int threads = 256) { return static_cast<unsigned>((n + threads - 1) / threads); }

}  // namespace

void* pinned_allocate(size_t bytes) {
  void* p = nullptr;
  check(cudaMallocHost(&p, bytes ? bytes : 1), "cudaMallocHost");
  return p;
}

void pinned_free(void* p) noexcept { cudaFreeHost(p); }

struct DeviceBatchBounder::State {
  NetworkPlan plan;
  std::vector<Buffer<double>> weights, transposed, biases;
  Buffer<double> lower, upper, box_c, box_r, xc, xr, yc, yr, lo, hi, pa, pea, pa2, pea2, pc, pec, pc2, pec2;
  Buffer<double> pre_lower, pre_upper, dm, dr, jc, jr, jc2, jr2, g, g_error, h, h_error, norms, norm_workspace;
  Buffer<int8_t> states;
  Buffer<int> exact, unfixed, feasible, used;
  Buffer<RegionCandidate> candidates;
};

DeviceBatchBounder::DeviceBatchBounder(const NetworkPlan& plan) : state_(new State) {
  State& s = *state_;
  s.plan = plan;
  s.weights.resize(plan.weights.size());
  s.transposed.resize(plan.weights.size());
  s.biases.resize(plan.weights.size());
  for (const auto& step : plan.steps) {
    if (!step.affine) continue;
    const std::vector<double>& w = plan.weights[step.matrix];
    std::vector<double> wt(w.size());
    for (int o = 0; o < step.out; ++o)
      for (int i = 0; i < step.in; ++i) wt[static_cast<size_t>(i) * step.out + o] = w[static_cast<size_t>(o) * step.in + i];
    upload(s.weights[step.matrix], w);
    upload(s.transposed[step.matrix], wt);
    upload(s.biases[step.matrix], plan.biases[step.matrix]);
  }
}

DeviceBatchBounder::~DeviceBatchBounder() = default;

void DeviceBatchBounder::run(const BatchInput& in, BatchOutput& out) {
  State& s = *state_;
  const NetworkPlan& plan = s.plan;
  const int batch = in.batch, n = plan.input_size, m = plan.output_size, total = plan.total_neurons;
  const size_t wide = static_cast<size_t>(batch) * plan.max_width;
  const size_t prefix = wide * n;
  for (auto* buf : {&s.xc, &s.xr, &s.yc, &s.yr, &s.lo, &s.hi, &s.pc, &s.pec, &s.pc2, &s.pec2}) buf->reserve(wide);
  for (auto* buf : {&s.pa, &s.pea, &s.pa2, &s.pea2}) buf->reserve(prefix);
  for (auto* buf : {&s.box_c, &s.box_r}) buf->reserve(static_cast<size_t>(batch) * n);
  for (auto* buf : {&s.pre_lower, &s.pre_upper, &s.dm, &s.dr}) buf->reserve(static_cast<size_t>(batch) * total);
  const size_t jac = static_cast<size_t>(batch) * m * std::max(plan.max_width, m);
  for (auto* buf : {&s.jc, &s.jr, &s.jc2, &s.jr2}) buf->reserve(jac);
  for (auto* buf : {&s.exact, &s.unfixed, &s.feasible}) buf->reserve(batch);
  s.norms.reserve(batch);
  const size_t cand = in.candidates.size();
  for (auto* buf : {&s.g, &s.g_error}) buf->reserve(cand * n);
  for (auto* buf : {&s.h, &s.h_error}) buf->reserve(cand);
  s.used.reserve(cand);
  upload(s.lower, in.lower);
  upload(s.upper, in.upper);
  upload(s.states, in.states);
  upload(s.candidates, in.candidates);

  start<<<blocks(static_cast<long long>(batch) * n), 256>>>(batch, n, s.lower.ptr, s.upper.ptr, s.box_c.ptr, s.box_r.ptr,
                                                             s.lo.ptr, s.hi.ptr, s.xc.ptr, s.xr.ptr, s.pa.ptr, s.pea.ptr, s.pc.ptr, s.pec.ptr,
                                                             s.exact.ptr, s.unfixed.ptr, s.feasible.ptr);
  size_t next_candidate = 0;
  for (const auto& step : plan.steps) {
    const long long cells = static_cast<long long>(batch) * step.out;
    if (step.affine) {
      const double* wt = s.transposed[step.matrix].ptr;
      const double* bias = s.biases[step.matrix].ptr;
      launch_product(s.xc.ptr, s.xr.ptr, batch, step.in, wt, step.out, bias, s.yc.ptr, s.yr.ptr);
      launch_product(s.pa.ptr, s.pea.ptr, static_cast<long long>(batch) * n, step.in, wt, step.out, nullptr, s.pa2.ptr, s.pea2.ptr);
      launch_product(s.pc.ptr, s.pec.ptr, batch, step.in, wt, step.out, bias, s.pc2.ptr, s.pec2.ptr);
      s.pa.swap(s.pa2);
      s.pea.swap(s.pea2);
      s.pc.swap(s.pc2);
      s.pec.swap(s.pec2);
      affine_bounds<<<blocks(cells), 256>>>(batch, step.out, n, s.yc.ptr, s.yr.ptr, s.pa.ptr, s.pea.ptr, s.pc.ptr,
                                            s.pec.ptr, s.box_c.ptr, s.box_r.ptr, s.exact.ptr, gamma_of(n + 4.0),
                                            s.lo.ptr, s.hi.ptr, s.xc.ptr, s.xr.ptr);
    } else {
      activation_forward<<<blocks(cells), 256>>>(batch, step.out, total, step.offset, step.slope, s.states.ptr, s.lo.ptr,
                                                 s.hi.ptr, s.pre_lower.ptr, s.pre_upper.ptr, s.dm.ptr, s.dr.ptr,
                                                 s.unfixed.ptr, s.feasible.ptr, s.xc.ptr, s.xr.ptr);
      size_t end = next_candidate;
      while (end < cand && in.candidates[end].activation == step.activation) ++end;
      const int count = static_cast<int>(end - next_candidate);
      if (count > 0)
        gather_region<<<blocks(static_cast<long long>(count) * n), 256>>>(
            count, s.candidates.ptr + next_candidate, n, step.out, s.pa.ptr, s.pea.ptr, s.pc.ptr, s.pec.ptr, s.exact.ptr,
            s.g.ptr + next_candidate * n, s.g_error.ptr + next_candidate * n, s.h.ptr + next_candidate,
            s.h_error.ptr + next_candidate, s.used.ptr + next_candidate);
      next_candidate = end;
      scale_prefix<<<blocks(static_cast<long long>(batch) * (n + 1) * step.out), 256>>>(
          batch, n, step.out, total, step.offset, s.dm.ptr, s.pa.ptr, s.pea.ptr, s.pc.ptr, s.pec.ptr, s.exact.ptr,
          s.unfixed.ptr);
      update_exact<<<blocks(batch), 256>>>(batch, s.exact.ptr, s.unfixed.ptr);
    }
  }
  if (next_candidate != cand) throw std::invalid_argument("DeviceBatchBounder: region candidates out of layer order");

  // Backward: rows (b, o) of the transposed Jacobian set, from the identity at the output.
  const long long rows = static_cast<long long>(batch) * m;
  start_backward<<<blocks(rows * m), 256>>>(rows, m, s.jc.ptr, s.jr.ptr);
  for (auto it = plan.steps.rbegin(); it != plan.steps.rend(); ++it) {
    if (it->affine) {
      launch_product(s.jc.ptr, s.jr.ptr, rows, it->out, s.weights[it->matrix].ptr, it->in, nullptr, s.jc2.ptr, s.jr2.ptr);
      s.jc.swap(s.jc2);
      s.jr.swap(s.jr2);
    } else {
      activation_backward<<<blocks(rows * it->out), 256>>>(rows, m, it->out, total, it->offset, s.dm.ptr, s.dr.ptr,
                                                          s.jc.ptr, s.jr.ptr);
    }
  }
  if (in.p == 2 && in.q == 2) {
    s.norm_workspace.reserve(jacobian_norm_workspace(batch, m, n));
    launch_jacobian_set_spectral_norm(batch, m, n, s.jc.ptr, s.jr.ptr, s.norm_workspace.ptr, s.norms.ptr);
  } else {
    majorant_norm<<<blocks(batch, 128), 128>>>(batch, m, n, in.p, in.q, s.jc.ptr, s.jr.ptr, s.norms.ptr);
  }
  check(cudaGetLastError(), "kernel launch");
  download(out.feasible, s.feasible, batch);
  download(out.pre_lower, s.pre_lower, static_cast<size_t>(batch) * total);
  download(out.pre_upper, s.pre_upper, static_cast<size_t>(batch) * total);
  download(out.jacobian_center, s.jc, static_cast<size_t>(rows) * n);
  download(out.jacobian_radius, s.jr, static_cast<size_t>(rows) * n);
  download(out.norm_upper, s.norms, batch);
  download(out.derivative_radius, s.dr, static_cast<size_t>(batch) * total);
  download(out.g, s.g, cand * n);
  download(out.g_error, s.g_error, cand * n);
  download(out.h, s.h, cand);
  download(out.h_error, s.h_error, cand);
  download(out.used, s.used, cand);
}

}  // namespace lipcert::cuda::detail
