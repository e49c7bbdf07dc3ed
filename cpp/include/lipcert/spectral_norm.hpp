#pragma once
/// Certified upper bounds on spectral norms (largest singular values).
#include <complex>
#include <string>
#include <vector>

#include "lipcert/layer.hpp"

namespace lipcert {

/// Proves ||A||_2 <= s by a Cholesky factorisation of s^2 I - G, G the Gram matrix of A's smaller
/// side, with the rounding errors of forming G and of the factorisation bounded a priori
/// (Demmel's backward error of Cholesky). Returns the certified bound (slightly above s), or +inf
/// when the factorisation fails, i.e. s is not (provably) above ||A||_2.
double prove_spectral_bound(const Eigen::Ref<const Eigen::MatrixXd>& a, double s);

/// Certified upper bound on ||A||_2 starting from an estimate of it (e.g. power iteration or SVD):
/// tries s = estimate * (1 + delta) for growing delta; falls back to min(||A||_F, sqrt(||A||_1 ||A||_inf)).
double certified_spectral_norm(const Eigen::Ref<const Eigen::MatrixXd>& a, double estimate);

/// Certified upper bound on ||A||_F (the computed sum of squares with its rounding error).
double frobenius_norm_upper(const Eigen::Ref<const Eigen::MatrixXd>& a);

/// Largest singular value by SVD (an estimate, not certified).
double svd_spectral_norm(const Eigen::Ref<const Eigen::MatrixXd>& a);

/// The circular convolution a zero-padded (strided) convolution embeds in: an nh x nw grid large
/// enough that no wrap-around reaches a non-zero input and strided outputs stay distinct. The transfer
/// matrix at frequency (u, v) is sum over taps (a, b) of W[:, :, a, b] * twiddle_h[(u a) % nh] *
/// twiddle_w[(v b) % nw]; its computed value is within transfer_error (2-norm) of the exact one.
struct CirculantEmbedding {
  int nh = 0, nw = 0;
  std::vector<std::complex<double>> twiddle_h, twiddle_w;
  double transfer_error = 0.0;
};
CirculantEmbedding circulant_embedding(const Layer& conv);

/// Certified spectral norm bound of a convolution: the norm of the circular convolution on an N x N
/// grid large enough that the zero-padded (strided) convolution is a submatrix of it; computed as the
/// max over frequencies of the certified norm of the (out_ch x in_ch) transfer matrix.
double conv_circulant_spectral_bound(const Layer& conv);

struct LayerNormBound {
  double upper;
  std::string how;  ///< "cholesky", "circulant", "closed-form"
};

/// Certified spectral norm bound of an affine layer's linear part, guided by an estimate.
/// Convolutions small enough are unrolled and proved like dense layers, larger ones use the
/// circulant bound; average pooling has a closed form.
LayerNormBound layer_spectral_upper(const Layer& layer, double estimate);

/// Whether layer_spectral_upper unrolls this convolution to a dense matrix.
bool conv_is_unrollable(const Layer& conv);

/// Certified ||A||_{1->1} (q = One) or ||A||_{inf->inf} (q = Inf) of an affine layer, matrix-free.
double layer_abs_sum_norm(const Layer& layer, bool columns);

}  // namespace lipcert
