"""The NodeODM-compatible API on :3000."""
