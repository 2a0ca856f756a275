# Two commands set up a fresh machine and do everything:
#   make demo   - the whole pipeline on the shipped models: export, calibrate, build --check, report, segtrt run
#   make test   - the type check of the TensorRT-facing code, then the test suite (what CI runs)
#   make gpu-check - the CUDA kernels on this machine's GPU against the CPU twins (fails cleanly without a GPU)
#   make triton-venv - .venv-triton: tritonserver (nvidia-pytriton, numpy<2) for the serving tests (make test makes it)
# Both create .venv and build the C++/CUDA code first when needed.

VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
BUILD  := build
# pyright (npm) and tensorrt-stubs live in .typecheck/, not in the venv: the stubs' `tensorrt` folder would make
# `import tensorrt` succeed there with nothing in it.
TYPECHECK := .typecheck
PYRIGHT   := pyright@1.1.414
# tritonserver for tests/test_serving_triton.py: nvidia-pytriton wants numpy<2, so it has its own venv. Its
# Python-backend stub ignores PYTHONPATH: a .pth file puts this checkout's python/ folder on its path.
TRITON_VENV  := .venv-triton
TRITON_STAMP := $(TRITON_VENV)/.installed

.PHONY: setup system native demo test typecheck triton-venv gpu-check clean

setup: system $(STAMP) native

# Debian packages from requirements-system.txt, only those missing (so a machine that has them needs no root).
system:
	@missing=$$(grep -v '^\s*#' requirements-system.txt | sed 's/#.*//' | xargs -r -n1 | \
		while read p; do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done | xargs); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages: $$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

$(STAMP): requirements.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# CPU twins of the plugins, CUDA kernels, and the TensorRT plugin library where headers exist.
native:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release > $(BUILD).log 2>&1 || (cat $(BUILD).log; exit 1)
	@grep -E "^-- segtrt:" $(BUILD).log || true
	cmake --build $(BUILD) -j2

demo: setup
	$(VENV)/bin/segtrt demo

# TensorRT-facing code against tensorrt-stubs 10.13: a misspelled or removed TensorRT call fails here.
typecheck: $(STAMP) $(TYPECHECK)/.installed
	$(TYPECHECK)/node_modules/.bin/pyright --pythonpath $(abspath $(PY))

$(TYPECHECK)/.installed: requirements-typecheck.txt
	$(PY) -m pip install --quiet --no-deps --upgrade --target $(TYPECHECK)/site -r requirements-typecheck.txt
	npm install --silent --no-audit --no-fund --prefix $(TYPECHECK) $(PYRIGHT)
	touch $@

triton-venv: $(TRITON_STAMP)

$(TRITON_STAMP): requirements-triton.txt
	python3 -m venv $(TRITON_VENV)
	$(TRITON_VENV)/bin/python -m pip install --quiet -r requirements-triton.txt
	$(TRITON_VENV)/bin/python -c "import site; print(site.getsitepackages()[0])" | \
		xargs -I{} sh -c 'echo "$(abspath python)" > {}/segtrt-checkout.pth'
	touch $@

test: setup typecheck $(TRITON_STAMP)
	$(PY) -m pytest -q

gpu-check:
	tests/gpu_check.sh

clean:
	rm -rf $(BUILD) $(BUILD).log $(TYPECHECK) $(TRITON_VENV)
