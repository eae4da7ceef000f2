#!/usr/bin/env bash
# Install the benchmark peers that the `bench` extra cannot: clawpack (PyClaw) builds its Fortran
# kernels from source and needs Debian's gfortran. Idempotent: every step is skipped when already done.
#
#     bash benchmarks/setup_peers.sh
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then
    SUDO="sudo"
fi

if ! command -v gfortran >/dev/null 2>&1; then
    echo "installing gfortran"
    $SUDO apt-get update
    $SUDO apt-get install -y gfortran
else
    echo "gfortran present: $(gfortran --version | head -n 1)"
fi

if ! python -c "import clawpack.pyclaw, clawpack.riemann" >/dev/null 2>&1; then
    echo "installing clawpack (builds Fortran kernels; several minutes)"
    python -m pip install meson-python ninja numpy
    python -m pip install --no-build-isolation clawpack
else
    echo "clawpack present: $(python -c 'import clawpack; print(clawpack.__version__)')"
fi

for peer in exponax hj_reachability; do
    if ! python -c "import ${peer}" >/dev/null 2>&1; then
        echo "installing ${peer}"
        python -m pip install "${peer}" || echo "could not install ${peer}; its benchmark rows are skipped"
    else
        echo "${peer} present"
    fi
done
