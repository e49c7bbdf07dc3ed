#pragma once
/// Floating-point error constants and directed rounding helpers.
///
/// lipcert runs in the default round-to-nearest mode and bounds rounding errors analytically
/// (Higham, "Accuracy and Stability of Numerical Algorithms", ch. 3): a certified quantity is the
/// computed value plus an explicit error margin, with the final scalar steps rounded outward.
#include <cmath>
#include <limits>

namespace lipcert {

/// Unit roundoff of IEEE double precision.
inline constexpr double kUnitRoundoff = 0x1.0p-53;

/// gamma_n = n u / (1 - n u): the relative error bound of an n-term inner product.
inline double gamma(double n) {
  const double nu = n * kUnitRoundoff;
  return nu / (1.0 - 2.0 * nu);  // the 2 keeps the bound valid after rounding this expression itself
}

/// The next double above x (x itself for +inf).
inline double round_up(double x) { return std::nextafter(x, std::numeric_limits<double>::infinity()); }
/// The next double below x (x itself for -inf).
inline double round_down(double x) { return std::nextafter(x, -std::numeric_limits<double>::infinity()); }

inline double add_up(double a, double b) { return round_up(a + b); }
inline double mul_up(double a, double b) { return round_up(a * b); }
inline double div_up(double a, double b) { return round_up(a / b); }
inline double sqrt_up(double a) { return round_up(std::sqrt(a)); }
inline double sub_down(double a, double b) { return round_down(a - b); }
inline double mul_down(double a, double b) { return round_down(a * b); }
inline double div_down(double a, double b) { return round_down(a / b); }

}  // namespace lipcert
