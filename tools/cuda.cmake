# tools/cuda.cmake: finds what the CUDA backend needs (nvcc, cudart, cuBLAS, cuDNN library and
# header), prints where it found each one, and sets ST_HAVE_CUDA (ON when all are found).
# Included by CMakeLists.txt when SIMTUNE_CUDA is ON or REQUIRE; with REQUIRE, a missing part
# stops the configuration (a GPU machine must not build a CPU-only simtune by accident).
#
# cuDNN is looked up by its unversioned name and by its versioned one (libcudnn.so.9: the
# PyTorch wheels ship only that), next to the toolkit, in the system paths, under CUDNN_ROOT, and
# under every Python site's nvidia/cudnn/{lib,include} (pip's nvidia-cudnn-cu12/13 wheels).
# cuDNN 9 loads its sub-libraries (libcudnn_cnn.so.9, ...) at run time from the loader's path:
# with a wheel's cuDNN, put its lib folder on LD_LIBRARY_PATH (tools/gpu-check.sh does).

# Python site folders of the interpreter on PATH and of Debian's /usr/bin/python3.
function(st_python_site_dirs out)
  set(dirs "")
  find_program(ST_CUDA_PYTHON3 python3)
  foreach(python IN ITEMS ${ST_CUDA_PYTHON3} /usr/bin/python3)
    if(EXISTS ${python})
      execute_process(
        COMMAND ${python} -c "import site; print(';'.join(site.getsitepackages() + [site.getusersitepackages()]))"
        OUTPUT_VARIABLE found OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
      list(APPEND dirs ${found})
    endif()
  endforeach()
  list(REMOVE_DUPLICATES dirs)
  set(${out} ${dirs} PARENT_SCOPE)
endfunction()

include(CheckLanguage)
check_language(CUDA)
find_package(CUDAToolkit QUIET)
st_python_site_dirs(ST_PYTHON_SITES)
set(ST_CUDNN_LIB_HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib $ENV{CUDNN_ROOT}/lib)
set(ST_CUDNN_INC_HINTS ${CUDAToolkit_INCLUDE_DIRS} $ENV{CUDNN_ROOT}/include)
foreach(site IN LISTS ST_PYTHON_SITES)
  list(APPEND ST_CUDNN_LIB_HINTS ${site}/nvidia/cudnn/lib)
  list(APPEND ST_CUDNN_INC_HINTS ${site}/nvidia/cudnn/include)
endforeach()
find_path(CUDNN_INCLUDE_DIR cudnn.h HINTS ${ST_CUDNN_INC_HINTS})
# Unversioned name first (a -dev install), then the runtime's soname (wheels, runtime packages).
find_library(CUDNN_LIBRARY NAMES cudnn libcudnn.so.9 HINTS ${ST_CUDNN_LIB_HINTS})

# One line per part: where it is, or NOT FOUND; the missing ones collected in ST_CUDA_MISSING.
set(ST_CUDA_MISSING "")
function(st_cuda_report what where)
  if(where)
    message(STATUS "simtune:   ${what}: ${where}")
  else()
    message(STATUS "simtune:   ${what}: NOT FOUND")
    set(ST_CUDA_MISSING "${ST_CUDA_MISSING} ${what}" PARENT_SCOPE)
  endif()
endfunction()
set(ST_CUBLAS_AT "")
if(TARGET CUDA::cublas)
  set(ST_CUBLAS_AT ${CUDA_cublas_LIBRARY})
endif()
message(STATUS "simtune: CUDA backend parts")
st_cuda_report("nvcc" "${CMAKE_CUDA_COMPILER}")
st_cuda_report("cudart" "${CUDA_cudart_LIBRARY}")
st_cuda_report("cuBLAS" "${ST_CUBLAS_AT}")
st_cuda_report("cuDNN library" "${CUDNN_LIBRARY}")
st_cuda_report("cuDNN header" "${CUDNN_INCLUDE_DIR}")

if(ST_CUDA_MISSING STREQUAL "" AND CUDAToolkit_FOUND)
  set(ST_HAVE_CUDA ON)
elseif(ST_CUDA_CHOICE STREQUAL "REQUIRE")
  message(FATAL_ERROR "simtune: -DSIMTUNE_CUDA=REQUIRE, but the CUDA backend cannot be built: "
                      "missing${ST_CUDA_MISSING} (point CMake at them with CUDAToolkit_ROOT, "
                      "CUDNN_ROOT, -DCUDNN_LIBRARY=... -DCUDNN_INCLUDE_DIR=...)")
endif()
