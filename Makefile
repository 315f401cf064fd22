# Two commands set up everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint bench venv clean sandbox-tools browser-tools metrics-tools

venv: $(STAMP)

# Re-install when the dependencies change; PyPI only.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[test]'
	@touch $(STAMP)

# bubblewrap and libseccomp2 make the scripts' sandbox, which the worker requires; installed through apt where we may (root, Debian).
sandbox-tools:
	@command -v bwrap >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -q bubblewrap >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 \
		&& apt-get install -y -q bubblewrap >/dev/null 2>&1)) || echo "bubblewrap not installed: the worker will refuse to start (RUNNER_ALLOW_UNSANDBOXED=true for local development only)"; }
	@{ /sbin/ldconfig -p 2>/dev/null || ldconfig -p 2>/dev/null; } | grep -q 'libseccomp\.so\.2' || { [ "$$(id -u)" = 0 ] \
		&& command -v apt-get >/dev/null 2>&1 && apt-get install -y -q libseccomp2 >/dev/null 2>&1 \
		|| echo "libseccomp2 not installed: the worker will refuse to start (RUNNER_ALLOW_UNSANDBOXED=true for local development only)"; }

# Debian's chromium drives the dashboard tests (Playwright with executable_path; never a browser download).
browser-tools:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 \
		&& apt-get install -y -q chromium >/dev/null 2>&1)) || echo "chromium not installed: the dashboard browser test is skipped"; }

# Debian's prometheus scrapes the API and the worker in tests/test_metrics.py (without it the test parses /metrics).
metrics-tools:
	@command -v prometheus >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& (apt-get install -y -q prometheus >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 \
		&& apt-get install -y -q prometheus >/dev/null 2>&1)) || echo "prometheus not installed: the metrics test parses the exposition instead of scraping it"; }

run: venv sandbox-tools
	$(BIN)/nango dev

test: venv sandbox-tools browser-tools metrics-tools
	$(BIN)/ruff check .
	$(BIN)/pytest -q --durations=30

lint: venv
	$(BIN)/ruff check .

bench: venv
	$(BIN)/python bench/records.py

clean:
	rm -rf $(VENV) .nango dist build *.egg-info
