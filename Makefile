# One entry point for people and CI: `make check` installs what the tests need
# on a fresh Debian/Ubuntu machine (as root), then lints and runs every test.
PYTHON ?= python3
APT_PACKAGES = iproute2 bridge-utils iptables nftables iputils-ping shellcheck \
	util-linux procps graphviz openssh-server python3-apt

.PHONY: check deps lint test example

check: deps lint test

deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(APT_PACKAGES) >/dev/null
	$(PYTHON) -m pip install -q -e '.[test]'

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy

test:
	$(PYTHON) -m pytest -q

example:
	$(PYTHON) -m pip install -q .
	netgen render specs/walkthrough.yaml
