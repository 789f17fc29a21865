"""The local-disk engine: segmented, checksummed, group-committed logs."""
