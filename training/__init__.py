"""Training package: builds, trains and calibrates the dfscan detector."""
