// Bindings only for the optional CUDA kernels; imported lazily by lipcert._cuda_loader.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include "lipcert/cuda/power_iteration.hpp"
#include "lipcert/cuda/subdomain_bounds.hpp"

namespace py = pybind11;

PYBIND11_MODULE(_cuda, m) {
  m.doc() = "lipcert CUDA kernels (private)";
  py::module_::import("lipcert._core");  // registers the Network and SubdomainBounder types used below
  py::class_<lipcert::cuda::GpuSubdomainBounder, lipcert::SubdomainBounder,
             std::shared_ptr<lipcert::cuda::GpuSubdomainBounder>>(m, "GpuSubdomainBounder")
      .def(py::init<const lipcert::Network&>(), py::arg("net"), py::keep_alive<1, 2>(),
           "Uploads the network to the GPU; raises ValueError for networks outside the GPU path.");
  m.def("device_count", &lipcert::cuda::device_count);
  m.def("batched_power_iteration",
        [](const std::vector<py::array_t<double, py::array::f_style | py::array::forcecast>>& matrices,
           int iterations, unsigned long long seed) {
          std::vector<lipcert::cuda::MatrixView> views;
          for (const auto& a : matrices) {
            if (a.ndim() != 2) throw std::invalid_argument("batched_power_iteration: expected 2-D arrays");
            views.push_back({a.data(), static_cast<int>(a.shape(0)), static_cast<int>(a.shape(1))});
          }
          py::gil_scoped_release release;
          return lipcert::cuda::batched_power_iteration(views, iterations, seed);
        },
        py::arg("matrices"), py::arg("iterations"), py::arg("seed") = 0,
        "Power-iteration estimates of ||A||_2 (lower estimates, not certified) for each matrix.");
}
