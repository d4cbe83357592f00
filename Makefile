# The two commands of the README's quick start.
.PHONY: run test

run:  ## install into .venv and start clusterodm with its defaults (ports 3000/8080/10000, state in ./data)
	scripts/setup.sh
	.venv/bin/clusterodm

test:  ## install everything (incl. test tools) and run the whole test suite
	scripts/test.sh
