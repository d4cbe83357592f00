# The two commands of the README's quick start (`demo`, `test`), and `run` for a real cluster.
.PHONY: demo run test

demo:  ## install into .venv and start a cluster to try: clusterodm in front of three simulated nodes
	scripts/setup.sh
	.venv/bin/clusterodm demo

run:  ## install into .venv and start clusterodm with its defaults (ports 3000/8080/10000, state in ./data)
	scripts/setup.sh
	.venv/bin/clusterodm

test:  ## install everything (incl. test tools) and run the whole test suite
	scripts/test.sh
