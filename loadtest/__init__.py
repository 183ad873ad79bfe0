"""How the service is measured: the Locust file and the benchmark program."""
