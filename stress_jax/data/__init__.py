"""Datasets: the shared clip record, face geometry, the synthetic simulator."""
