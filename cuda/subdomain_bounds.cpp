// The host half of GpuSubdomainBounder: the network plan, packing subdomains for the device, and turning
// the device's arrays back into SubdomainBounds with the shared pieces of the CPU implementation.
#include "lipcert/cuda/subdomain_bounds.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include "batch_kernels.hpp"
#include "lipcert/cuda/power_iteration.hpp"
#include "lipcert/linear_ops.hpp"

namespace lipcert::cuda {

namespace {

using RowMajor = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// The prefix buffers hold batch x input_size x width doubles each; this caps one of them at 1 GiB.
constexpr long long kMaxPrefixEntries = 1LL << 27;

detail::NetworkPlan make_plan(const Network& net, long long max_dense_entries) {
  detail::NetworkPlan plan;
  plan.input_size = net.input_size();
  plan.output_size = net.output_size();
  plan.max_width = std::max(plan.input_size, plan.output_size);
  int activation = 0;
  for (size_t index = 0; index < net.layers().size(); ++index) {
    const Layer& l = net.layers()[index];
    const int in = l.in_shape.size(), out = l.out_shape.size();
    plan.max_width = std::max({plan.max_width, in, out});
    if (l.is_affine()) {
      if (static_cast<long long>(in) * out > max_dense_entries)
        throw std::invalid_argument("GpuSubdomainBounder: layer " + std::to_string(index) + " (" +
                                    layer_kind_name(l.kind) + ") is too large to run as a dense matrix");
      const RowMajor w = dense_matrix(l);
      const Eigen::VectorXd bias = apply_linear(l, Eigen::VectorXd::Zero(in), true).col(0);
      plan.steps.push_back({true, in, out, static_cast<int>(plan.weights.size()), 0.0, 0, 0});
      plan.weights.emplace_back(w.data(), w.data() + w.size());
      plan.biases.emplace_back(bias.data(), bias.data() + bias.size());
    } else if (l.is_activation()) {
      if (!l.is_piecewise_linear_activation())
        throw std::invalid_argument(std::string("GpuSubdomainBounder: ") + layer_kind_name(l.kind) +
                                    " is not an elementwise piecewise-linear activation; the GPU bounder "
                                    "takes ReLU or LeakyReLU (branch and bound over MaxMin runs on the CPU)");
      const double slope = l.kind == LayerKind::ReLU ? 0.0 : l.negative_slope;
      plan.steps.push_back({false, in, out, -1, slope, plan.total_neurons, activation++});
      plan.total_neurons += out;
    }
  }
  return plan;
}

}  // namespace

GpuSubdomainBounder::GpuSubdomainBounder(const Network& net, long long max_dense_entries)
    : net_(net), plan_(std::make_unique<detail::NetworkPlan>(make_plan(net, max_dense_entries))) {
  if (device_count() == 0) throw std::runtime_error("GpuSubdomainBounder: no CUDA device is available");
  device_ = std::make_unique<detail::DeviceBatchBounder>(*plan_);
  input_ = std::make_unique<detail::BatchInput>();
  output_ = std::make_unique<detail::BatchOutput>();
}

GpuSubdomainBounder::~GpuSubdomainBounder() = default;

std::vector<SubdomainBound> GpuSubdomainBounder::bound(const std::vector<Subdomain>& subdomains, Norm p, Norm q) {
  using Clock = std::chrono::steady_clock;
  const auto seconds_since = [](Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); };
  const detail::NetworkPlan& plan = *plan_;
  const int n = plan.input_size, m = plan.output_size, total = plan.total_neurons;
  std::vector<SubdomainBound> results(subdomains.size());
  std::vector<size_t> on_gpu, on_cpu;
  for (size_t i = 0; i < subdomains.size(); ++i) {
    const Subdomain& s = subdomains[i];
    if (s.lower.size() != n || s.upper.size() != n)
      throw std::invalid_argument("bound_subdomain: the box must have the network's input size");
    (s.lower.allFinite() && s.upper.allFinite() ? on_gpu : on_cpu).push_back(i);
  }
  if (!on_cpu.empty()) {
    std::vector<Subdomain> unbounded;
    for (size_t i : on_cpu) unbounded.push_back(subdomains[i]);
    std::vector<SubdomainBound> cpu = bound_subdomains(net_, unbounded, p, q);
    for (size_t k = 0; k < on_cpu.size(); ++k) results[on_cpu[k]] = std::move(cpu[k]);
  }

  std::vector<const detail::NetworkPlan::Step*> activations;
  for (const auto& step : plan.steps)
    if (!step.affine) activations.push_back(&step);
  const int layers = static_cast<int>(activations.size());
  for (size_t i : on_gpu) {
    const Subdomain& s = subdomains[i];
    if (s.states.size() > activations.size())
      throw std::invalid_argument("bound_subdomain: more activation assignments than activation layers");
    for (size_t k = 0; k < s.states.size(); ++k)
      if (!s.states[k].empty() && static_cast<int>(s.states[k].size()) != activations[k]->out)
        throw std::invalid_argument("bound_subdomain: activation layer " + std::to_string(k) + " has " +
                                    std::to_string(activations[k]->out) + " neurons but the assignment has " +
                                    std::to_string(s.states[k].size()));
  }
  const size_t chunk = static_cast<size_t>(std::max(1LL, kMaxPrefixEntries / (static_cast<long long>(n) * plan.max_width)));
  std::lock_guard<std::mutex> lock(mutex_);
  timing_ = {};
  detail::BatchInput& in = *input_;
  detail::BatchOutput& out = *output_;
  for (size_t first = 0; first < on_gpu.size(); first += chunk) {
    const auto packing = Clock::now();
    const int batch = static_cast<int>(std::min(chunk, on_gpu.size() - first));
    in.batch = batch;
    in.p = p == Norm::Inf ? 0 : p == Norm::One ? 1 : 2;
    in.q = q == Norm::Inf ? 0 : q == Norm::One ? 1 : 2;
    in.lower.resize(static_cast<size_t>(batch) * n);
    in.upper.resize(static_cast<size_t>(batch) * n);
    in.states.resize(static_cast<size_t>(batch) * total);
    // Region candidates are laid out layer-major, each subdomain's rows in neuron order: count them per
    // (layer, subdomain) while packing, then place them at the prefix sums.
    std::vector<int> first_row(static_cast<size_t>(layers) * batch + 1, 0);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; ++b) {
      const Subdomain& s = subdomains[on_gpu[first + b]];
      std::copy(s.lower.data(), s.lower.data() + n, in.lower.begin() + static_cast<long long>(b) * n);
      std::copy(s.upper.data(), s.upper.data() + n, in.upper.begin() + static_cast<long long>(b) * n);
      int8_t* states = in.states.data() + static_cast<size_t>(b) * total;
      std::fill(states, states + total, int8_t{0});
      for (int k = 0; k < layers; ++k) {
        int assigned = 0;
        if (k < static_cast<int>(s.states.size()) && !s.states[k].empty()) {
          std::copy(s.states[k].begin(), s.states[k].end(), states + activations[k]->offset);
          for (int8_t v : s.states[k]) assigned += v != 0;
        }
        first_row[static_cast<size_t>(k) * batch + b + 1] = assigned;
      }
    }
    for (size_t i = 1; i < first_row.size(); ++i) first_row[i] += first_row[i - 1];
    in.candidates.resize(first_row.back());
#pragma omp parallel for schedule(static)
    for (int b = 0; b < batch; ++b) {
      const int8_t* states = in.states.data() + static_cast<size_t>(b) * total;
      for (int k = 0; k < layers; ++k) {
        int row = first_row[static_cast<size_t>(k) * batch + b];
        for (int i = 0; i < activations[k]->out; ++i)
          if (const int state = states[activations[k]->offset + i]) in.candidates[row++] = {b, k, i, state};
      }
    }
    timing_.pack_s += seconds_since(packing);
    const auto on_device = Clock::now();
    device_->run(in, out);
    timing_.device_s += seconds_since(on_device);
    const auto assembling = Clock::now();

#pragma omp parallel
    {
      std::vector<SubdomainBound::Unstable> unstable;
#pragma omp for schedule(dynamic, 16)
      for (int b = 0; b < batch; ++b) {
        SubdomainBound& r = results[on_gpu[first + b]];
        if (!out.feasible[b]) {
          r.feasible = false;
          continue;
        }
        const size_t base = static_cast<size_t>(b) * total;
        r.pre_lower.reserve(layers);
        r.pre_upper.reserve(layers);
        for (const auto* step : activations) {
          r.pre_lower.emplace_back(Eigen::Map<const Eigen::VectorXd>(out.pre_lower.data() + base + step->offset, step->out));
          r.pre_upper.emplace_back(Eigen::Map<const Eigen::VectorXd>(out.pre_upper.data() + base + step->offset, step->out));
        }
        const size_t jac = static_cast<size_t>(b) * m * n;
        r.jacobian_center = Eigen::Map<const RowMajor>(out.jacobian_center.data() + jac, m, n);
        r.jacobian_radius = Eigen::Map<const RowMajor>(out.jacobian_radius.data() + jac, m, n);
        r.norm_upper = std::isnan(out.norm_upper[b]) ? jacobian_set_norm_upper(r.jacobian_center, r.jacobian_radius, p, q)
                                                     : out.norm_upper[b];
        // A (layer, subdomain) range of candidates is used whole or not at all (the prefix is exact there
        // or not), and its rows are consecutive on the device: copied as blocks.
        const auto first_of = [&](int k) { return first_row[static_cast<size_t>(k) * batch + b]; };
        const auto count_of = [&](int k) { return first_row[static_cast<size_t>(k) * batch + b + 1] - first_of(k); };
        const auto used_in = [&](int k) { return count_of(k) > 0 && out.used[first_of(k)]; };
        int used = 0;
        for (int k = 0; k < layers; ++k)
          if (used_in(k)) used += count_of(k);
        r.region_g.resize(used, n);
        r.region_g_error.resize(used, n);
        r.region_h.resize(used);
        r.region_h_error.resize(used);
        int row = 0;
        for (int k = 0; k < layers; ++k) {
          if (!used_in(k)) continue;
          const int c = first_of(k), count = count_of(k);
          const size_t at = static_cast<size_t>(c) * n;
          r.region_g.middleRows(row, count) = Eigen::Map<const RowMajor>(out.g.data() + at, count, n);
          r.region_g_error.middleRows(row, count) = Eigen::Map<const RowMajor>(out.g_error.data() + at, count, n);
          r.region_h.segment(row, count) = Eigen::Map<const Eigen::VectorXd>(out.h.data() + c, count);
          r.region_h_error.segment(row, count) = Eigen::Map<const Eigen::VectorXd>(out.h_error.data() + c, count);
          row += count;
        }
        // Unstable neurons from the device's derivative radii (derivative_interval's, computed there).
        unstable.clear();
        const double* radius = out.derivative_radius.data() + base;
        for (int k = 0; k < layers; ++k)
          for (int i = 0; i < activations[k]->out; ++i)
            if (const double d = radius[activations[k]->offset + i]; d != 0.0)
              unstable.push_back(unstable_neuron(r, k, i, d));
        r.unstable.assign(unstable.begin(), unstable.end());
      }
    }
    timing_.assemble_s += seconds_since(assembling);
  }
  return results;
}

}  // namespace lipcert::cuda
