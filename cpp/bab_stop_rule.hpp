#pragma once
// When a best-first branch-and-bound search stops: shared by lipschitz_bab and lipschitz_bab_global.
#include <chrono>
#include <functional>
#include <string>

#include "lipcert/bab.hpp"

namespace lipcert {

class BabStopRule {
 public:
  BabStopRule(const BabOptions& options, const std::function<bool(const BabProgress&)>& progress)
      : options_(options), progress_(progress), next_report_(options.progress_interval) {}

  double elapsed() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

  // The search's status if it stops before its next step, else empty; reports progress on the way.
  // upper: the global upper bound; best_open: the best open node's bound (ignored when open is 0).
  std::string status(double upper, double lower, double best_open, long nodes, long open) {
    if (upper - lower <= options_.tol * upper) return "converged";
    // what keeps the gap open are leaves without a certified witness
    if (open == 0 || best_open <= lower * (1 + options_.tol)) return "stalled";
    if (elapsed() > options_.time_limit) return "time_limit";
    if (nodes >= options_.max_nodes) return "node_limit";
    if (progress_ && elapsed() >= next_report_) {
      next_report_ = elapsed() + options_.progress_interval;
      if (!progress_(BabProgress{lower, upper, elapsed(), nodes, open})) return "stopped";
    }
    return {};
  }

 private:
  using Clock = std::chrono::steady_clock;
  const BabOptions& options_;
  const std::function<bool(const BabProgress&)>& progress_;
  Clock::time_point start_ = Clock::now();
  double next_report_;
};

}  // namespace lipcert
