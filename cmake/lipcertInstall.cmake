# Embedding: `cmake --install` puts the headers, the static libraries and a CMake package under the
# prefix: lipcert::core always, lipcert::cuda (component `cuda`) when the CUDA kernels were built.
# Off inside pip builds, whose install tree is the Python wheel.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(_lipcert_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/lipcert)
install(TARGETS lipcert_core EXPORT lipcertTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
install(DIRECTORY ${PROJECT_SOURCE_DIR}/cpp/include/lipcert DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
if(TARGET lipcert_cuda)
  set(LIPCERT_WITH_CUDA ON)
  install(TARGETS lipcert_cuda EXPORT lipcertTargets ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR})
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/cuda/include/lipcert DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
else()
  set(LIPCERT_WITH_CUDA OFF)
endif()
install(EXPORT lipcertTargets NAMESPACE lipcert:: DESTINATION ${_lipcert_cmake_dir})
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/lipcertConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/lipcertConfig.cmake INSTALL_DESTINATION ${_lipcert_cmake_dir})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/lipcertConfigVersion.cmake
                                 VERSION ${PROJECT_VERSION} COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/lipcertConfig.cmake ${PROJECT_BINARY_DIR}/lipcertConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/FindHiGHS.cmake DESTINATION ${_lipcert_cmake_dir})
