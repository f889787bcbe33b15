"""Data and training helpers shared by the example scripts."""
