#pragma once
// Double-word ("double-double") arithmetic: a value is hi + lo with |lo| <= ulp(hi) / 2, about 106
// bits, from double operations and FMA. The algorithms are those of Joldes, Muller and Popescu,
// "Tight and rigorous error bounds for basic building blocks of double-word arithmetic" (ACM TOMS
// 44(2), 2017), whose proved relative error bounds (u = 2^-53, no underflow or overflow) are:
// AccurateDWPlusDW 3u^2 + 13u^3, DWTimesFP3 2u^2, DWTimesDW3 5u^2, DWDivFP3 3u^2. Every operation
// here therefore has relative error below 8u^2 = 2^-103, the unit roundoff the certified error
// bounds use. Needs -ffp-contract=off: a contracted a*b+c breaks the error-free transforms.
#include <cmath>

namespace lipcert {

inline constexpr int kDoubleWordBits = 103;  // each operation's relative error is below 2^-103

struct DoubleWord {
  double hi = 0.0, lo = 0.0;

  DoubleWord() = default;
  DoubleWord(double x) : hi(x), lo(0.0) {}  // NOLINT: exact, used as T(x) in the generic code
  DoubleWord(double h, double l) : hi(h), lo(l) {}
  explicit operator double() const { return hi; }  // hi is lo + hi rounded to nearest
};

namespace double_word_detail {

inline DoubleWord two_sum(double a, double b) {
  const double s = a + b, bb = s - a;
  return {s, (a - (s - bb)) + (b - bb)};
}

// Exact when |a| >= |b| (or a == 0).
inline DoubleWord fast_two_sum(double a, double b) {
  const double s = a + b;
  return {s, b - (s - a)};
}

}  // namespace double_word_detail

// AccurateDWPlusDW.
inline DoubleWord operator+(const DoubleWord& x, const DoubleWord& y) {
  using namespace double_word_detail;
  const DoubleWord s = two_sum(x.hi, y.hi), t = two_sum(x.lo, y.lo);
  const DoubleWord v = fast_two_sum(s.hi, s.lo + t.hi);
  return fast_two_sum(v.hi, t.lo + v.lo);
}

inline DoubleWord operator-(const DoubleWord& x) { return {-x.hi, -x.lo}; }
inline DoubleWord operator-(const DoubleWord& x, const DoubleWord& y) { return x + (-y); }
inline DoubleWord& operator+=(DoubleWord& x, const DoubleWord& y) { return x = x + y; }

// DWTimesFP3: the hot operation of the certified affine maps (weights are doubles).
inline DoubleWord operator*(double a, const DoubleWord& x) {
  const double ch = x.hi * a;
  const double cl = std::fma(x.lo, a, std::fma(x.hi, a, -ch));
  return double_word_detail::fast_two_sum(ch, cl);
}
inline DoubleWord operator*(const DoubleWord& x, double a) { return a * x; }

// DWTimesDW3.
inline DoubleWord operator*(const DoubleWord& x, const DoubleWord& y) {
  const double ch = x.hi * y.hi;
  const double cl1 = std::fma(x.hi, y.hi, -ch);
  const double tl0 = x.lo * y.lo;
  const double tl1 = std::fma(x.hi, y.lo, tl0);
  const double cl2 = std::fma(x.lo, y.hi, tl1);
  return double_word_detail::fast_two_sum(ch, cl1 + cl2);
}

// DWDivFP3 (the remainder x.hi - th y is exact by FMA).
inline DoubleWord operator/(const DoubleWord& x, double y) {
  const double th = x.hi / y;
  const double pi = std::fma(th, y, -x.hi);
  const double tl = (x.lo - pi) / y;
  return double_word_detail::fast_two_sum(th, tl);
}

// Comparisons read hi first: for normalised words hi decides unless the two are equal.
inline bool operator<(const DoubleWord& x, const DoubleWord& y) { return x.hi < y.hi || (x.hi == y.hi && x.lo < y.lo); }
inline bool operator>(const DoubleWord& x, const DoubleWord& y) { return y < x; }
inline bool operator>=(const DoubleWord& x, const DoubleWord& y) { return !(x < y); }

}  // namespace lipcert
