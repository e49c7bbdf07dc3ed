#pragma once
#include <cstddef>

// Certified spectral norms of the batched interval Jacobian sets, on the device (used by batch_kernels).

namespace lipcert::cuda::detail {

/// The largest min(rows, cols) the device proof handles; larger Jacobians get NaN (bounded on the host).
constexpr int kMaxProofSide = 32;

/// For each b < batch, with C_b and R_b the row-major m x n blocks at c + b m n and r + b m n:
/// out[b] = min(|| |C_b| + R_b ||_2, ||C_b||_2 + ||R_b||_2), each norm an upper bound proved as on the
/// CPU (lipcert::certified_spectral_norm: s^2 I - G positive definite by a Cholesky factorisation with
/// Demmel's error bound, G the Gram matrix of the smaller side with its rounding bound), the estimate s
/// from Jacobi eigenvalues of G. NaN where a proof does not go through or min(m, n) > kMaxProofSide;
/// the caller falls back to the CPU there.
/// workspace: device memory of jacobian_norm_workspace(batch, m, n) doubles.
void launch_jacobian_set_spectral_norm(int batch, int m, int n, const double* c, const double* r, double* workspace,
                                       double* out);
size_t jacobian_norm_workspace(int batch, int m, int n);

}  // namespace lipcert::cuda::detail
