# Finds the HiGHS shared library and headers: the library preferably in HIGHS_LIBRARY_DIR (the highspy
# package's libhighs.so.1), the headers e.g. from the highsbox pip package (whose own CMake config
# points at lib64/ while the wheel ships lib/, so it cannot be used as is).
# Defines the imported target highs::highs.
find_path(HIGHS_INCLUDE_DIR Highs.h PATH_SUFFIXES highs)
if(HIGHS_LIBRARY_DIR)
  find_library(HIGHS_LIBRARY NAMES libhighs.so.1 highs PATHS ${HIGHS_LIBRARY_DIR} NO_DEFAULT_PATH)
endif()
find_library(HIGHS_LIBRARY NAMES highs)
include(FindPackageHandleStandardArgs)
find_package_handle_standard_args(HiGHS REQUIRED_VARS HIGHS_LIBRARY HIGHS_INCLUDE_DIR)
if(HiGHS_FOUND AND NOT TARGET highs::highs)
  get_filename_component(_highs_include_root "${HIGHS_INCLUDE_DIR}" DIRECTORY)
  add_library(highs::highs SHARED IMPORTED)
  set_target_properties(highs::highs PROPERTIES
    IMPORTED_LOCATION "${HIGHS_LIBRARY}"
    INTERFACE_INCLUDE_DIRECTORIES "${HIGHS_INCLUDE_DIR};${_highs_include_root}")
endif()
