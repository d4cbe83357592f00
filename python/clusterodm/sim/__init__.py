"""A faithful NodeODM API simulator, used to test the proxy without running photogrammetry."""
