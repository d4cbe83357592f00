"""The NodeODM dialect: pure helpers shared by the simulator and the proxy (no I/O)."""
