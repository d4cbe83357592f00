"""Type stubs for the Rust extension `clusterodm._native`."""

def native_version() -> str:
    """Version of the compiled extension (matches the Cargo package version)."""
