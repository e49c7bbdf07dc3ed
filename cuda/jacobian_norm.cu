// The CPU's spectral-norm proof (spectral_norm.cpp: make_gram, GramProof::bound, prove_from_estimate),
// one thread per subdomain, for the small Jacobians of branch and bound. Working matrices live in a
// global workspace interleaved over subdomains (entry e of thread b at e * batch + b), so neighbouring
// threads touch neighbouring addresses and nothing is reserved per resident thread.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>

#include "device_memory.hpp"
#include "jacobian_norm.hpp"

namespace lipcert::cuda::detail {

namespace {

constexpr double kUnit = 0x1.0p-53;
__device__ constexpr double kGaps[] = {1e-12, 1e-9, 1e-6, 1e-4, 1e-3, 1e-2, 5e-2};  // as in spectral_norm.cpp
constexpr int kMaxSweeps = 30;

__device__ inline double gamma_of(double n) {
  const double nu = n * kUnit;
  return nu / (1.0 - 2.0 * nu);
}
__device__ inline double round_up(double x) { return ::nextafter(x, static_cast<double>(INFINITY)); }

// One matrix of the set: entry (i, j) of C, of R, or of the majorant |C| + R (rounded upward).
struct JacobianEntry {
  const double* c;
  const double* r;
  int which;  // 0: C, 1: R, 2: |C| + R
  __device__ double operator()(long long at) const {
    return which == 0 ? c[at] : which == 1 ? r[at] : __dadd_ru(fabs(c[at]), r[at]);
  }
};

// A d x d matrix of one thread in the interleaved workspace.
struct Square {
  double* base;
  int d, batch;
  __device__ double& operator()(int i, int j) const { return base[static_cast<long long>(i * d + j) * batch]; }
};

// Largest eigenvalue of the symmetric g by cyclic Jacobi rotations on a copy in w (backward stable,
// so the estimate is accurate to about u ||g|| even for clustered eigenvalues, unlike power iteration).
__device__ double largest_eigenvalue(const Square& g, const Square& w) {
  const int d = g.d;
  double diagonal = 0.0;
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j < d; ++j) w(i, j) = g(i, j);
    diagonal += g(i, i) * g(i, i);
  }
  for (int sweep = 0; sweep < kMaxSweeps; ++sweep) {
    double off = 0.0;
    for (int p = 0; p < d; ++p)
      for (int q = p + 1; q < d; ++q) off += w(p, q) * w(p, q);
    if (!(off > 1e-34 * diagonal)) break;
    for (int p = 0; p < d; ++p)
      for (int q = p + 1; q < d; ++q) {
        const double apq = w(p, q);
        if (apq == 0.0) continue;
        const double theta = (w(q, q) - w(p, p)) / (2 * apq);
        const double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(1 + theta * theta));
        const double c = 1 / sqrt(1 + t * t), s = t * c;
        for (int k = 0; k < d; ++k) {
          if (k == p || k == q) continue;
          const double akp = w(k, p), akq = w(k, q);
          w(k, p) = w(p, k) = c * akp - s * akq;
          w(k, q) = w(q, k) = s * akp + c * akq;
        }
        w(p, p) -= t * apq;
        w(q, q) += t * apq;
        w(p, q) = w(q, p) = 0.0;
      }
  }
  double best = 0.0;
  for (int i = 0; i < d; ++i) best = fmax(best, w(i, i));
  return best;
}

// GramProof::bound: a certified bound on ||B||_2 from s, or +inf when s^2 I - G is not proved positive
// definite (w is the Cholesky factor's workspace).
__device__ double bound_from(const Square& g, const Square& w, double gram_error, double max_diagonal, double s) {
  const int d = g.d;
  const double s2 = s * s;
  double trace = 0.0;
  for (int i = 0; i < d; ++i) {
    for (int j = 0; j <= i; ++j) w(i, j) = i == j ? s2 - g(i, i) : -g(i, j);
    if (!(w(i, i) > 0)) return INFINITY;
    trace += w(i, i);
  }
  for (int j = 0; j < d; ++j) {
    double pivot = w(j, j);
    for (int k = 0; k < j; ++k) pivot -= w(j, k) * w(j, k);
    if (!(pivot > 0) || !isfinite(pivot)) return INFINITY;
    const double ljj = sqrt(pivot);
    w(j, j) = ljj;
    for (int i = j + 1; i < d; ++i) {
      double v = w(i, j);
      for (int k = 0; k < j; ++k) v -= w(i, k) * w(j, k);
      v /= ljj;
      if (!isfinite(v)) return INFINITY;
      w(i, j) = v;
    }
  }
  trace = round_up(trace * (1 + gamma_of(d + 2.0)));
  // Demmel: a completed Cholesky of M gives R^T R = M + dM, ||dM||_2 <= gamma_{d+1} tr(M) / (1 - gamma_{d+1}).
  const double gd = gamma_of(d + 1.0);
  const double chol_error = round_up(gd * trace / (1 - gd));
  const double shift_error = round_up(2 * kUnit * (s2 + max_diagonal));
  const double total = round_up(round_up(round_up(s2 + gram_error) + shift_error) + chol_error);
  return round_up(sqrt(round_up(total + 1e-300)));
}

// certified_spectral_norm of one m x n matrix: 0 for a zero matrix, +inf where the proof fails.
__device__ double certified_norm(const JacobianEntry& a, int m, int n, const Square& g, const Square& w) {
  const bool wide = m < n;
  const int d = g.d, k = wide ? n : m;
  double fro2 = 0.0, max_abs = 0.0;
  for (long long at = 0; at < static_cast<long long>(m) * n; ++at) {
    const double v = a(at);
    fro2 = __dadd_ru(fro2, __dmul_ru(v, v));
    max_abs = fmax(max_abs, fabs(v));
  }
  if (max_abs == 0.0) return 0.0;
  double max_diagonal = 0.0;
  for (int i = 0; i < d; ++i)
    for (int j = 0; j <= i; ++j) {
      double v = 0.0;
      for (int l = 0; l < k; ++l)
        v = fma(wide ? a(static_cast<long long>(i) * n + l) : a(static_cast<long long>(l) * n + i),
                wide ? a(static_cast<long long>(j) * n + l) : a(static_cast<long long>(l) * n + j), v);
      g(i, j) = g(j, i) = v;
      if (i == j) max_diagonal = fmax(max_diagonal, v);
    }
  // |fl(G) - G| <= gamma_{k} |B|^T |B| elementwise, and || |B|^T |B| ||_2 <= ||B||_F^2.
  const double gram_error = round_up(gamma_of(k + 2.0) * fro2);
  const double estimate = sqrt(largest_eigenvalue(g, w));
  if (!(estimate > 0) || !isfinite(estimate)) return INFINITY;
  const double s2 = estimate * estimate;
  const double margins = gram_error + gamma_of(d + 1.0) * d * s2 + 4 * kUnit * s2;
  const double first = fmin(kGaps[0], 2 * margins / s2);
  double b = bound_from(g, w, gram_error, max_diagonal, estimate * (1 + first));
  for (int i = 0; i < 7 && !isfinite(b); ++i) b = bound_from(g, w, gram_error, max_diagonal, estimate * (1 + kGaps[i]));
  return b;
}

__global__ void jacobian_set_spectral_norm(int batch, int m, int n, const double* c, const double* r,
                                           double* workspace, double* out) {
  const int b = blockIdx.x * blockDim.x + threadIdx.x;
  if (b >= batch) return;
  const int d = min(m, n);
  const Square g{workspace + b, d, batch}, w{workspace + static_cast<long long>(d) * d * batch + b, d, batch};
  const long long offset = static_cast<long long>(b) * m * n;
  const double center = certified_norm({c + offset, r + offset, 0}, m, n, g, w);
  const double radius = certified_norm({c + offset, r + offset, 1}, m, n, g, w);
  const double majorant = certified_norm({c + offset, r + offset, 2}, m, n, g, w);
  const double bound = fmin(majorant, round_up(center + radius));
  out[b] = isfinite(bound) ? bound : NAN;
}

}  // namespace

size_t jacobian_norm_workspace(int batch, int m, int n) {
  const size_t d = std::min(m, n);
  return d <= kMaxProofSide ? 2 * d * d * static_cast<size_t>(batch) : 0;
}

void launch_jacobian_set_spectral_norm(int batch, int m, int n, const double* c, const double* r, double* workspace,
                                       double* out) {
  if (batch == 0) return;
  if (std::min(m, n) > kMaxProofSide) {
    check(cudaMemset(out, 0xff, sizeof(double) * batch), "cudaMemset");  // all-ones bytes: NaN
    return;
  }
  constexpr int threads = 64;
  jacobian_set_spectral_norm<<<(batch + threads - 1) / threads, threads>>>(batch, m, n, c, r, workspace, out);
}

}  // namespace lipcert::cuda::detail
